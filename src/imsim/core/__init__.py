"""Foundations every layer uses: names and option lists, errors, keyed random streams, output folders."""
