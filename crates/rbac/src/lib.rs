//! Kubernetes-style RBAC for the Cattery management plane.
#![forbid(unsafe_code)]
