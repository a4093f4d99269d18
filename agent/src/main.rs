//! purelb-agent (being written).
fn main() {}
