//! Unit tests of the announcer loop through the fake data plane.
