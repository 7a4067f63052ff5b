//! The order-tracking showcase shop (being built).

fn main() {}
