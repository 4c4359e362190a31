"""Protocol buffers of Tessera (sources and checked-in generated code)."""
