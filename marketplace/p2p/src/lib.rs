//! The marketplace's network half on libp2p.
