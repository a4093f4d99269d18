//! Address pools (placeholder, being written).
