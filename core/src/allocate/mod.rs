//! Allocation decisions (placeholder, being written).
