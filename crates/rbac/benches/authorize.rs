//! Authorization decision cost.
fn main() {}
