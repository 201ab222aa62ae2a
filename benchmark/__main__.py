"""``python -m benchmark`` == the ``benchmark`` command (also what ``torchrun -m benchmark`` runs)."""

from benchmark.cli import main

if __name__ == "__main__":
    main()
