//! purelb-allocator (being written).
fn main() {}
