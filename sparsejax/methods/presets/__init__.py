"""Published methods, one file each: short compositions of the parts."""
