"""The machine: precision, memory, the CPU allocator, atomic files and where built assets live."""
