"""DVC stage entry points: ``python -m stages.<name> --dataset <key>``; params in, files out."""
