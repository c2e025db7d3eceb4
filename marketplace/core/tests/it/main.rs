// Integration tests of market-core, one module per area.
