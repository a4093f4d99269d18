//! purelb-lab (being written).
