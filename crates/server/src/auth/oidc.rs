//! OpenID Connect: bearer JWTs verified against a configured issuer's keys.
