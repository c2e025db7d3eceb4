//! Subscriber setup for the marketplace's binaries.
