"""``spatialnav collect``: the CLI's entry point for world-model data collection (see ``world_model.data``)."""

from .data import collect, main

__all__ = ["collect", "main"]

if __name__ == "__main__":
    main()
