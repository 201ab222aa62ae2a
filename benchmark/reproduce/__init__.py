"""``benchmark reproduce``: a paper's tables from raw data in one resumable command.

* :mod:`.plan` -- declarative TOML plans (shipped ones in ``plans/``), validated before any work;
* :mod:`.graph` -- a plan expanded into content-keyed steps with their state (done, to do, blocked);
* :mod:`.steps` -- doing one step and recording it (the ledger in ``<out>/steps/``);
* :mod:`.executors` -- local (sequential or a process pool) and submitit/Slurm execution;
* :mod:`.tables`, :mod:`.figures` -- reproduction tables beside the published numbers, qualitative figures;
* :mod:`.published` -- the published numbers a plan compares with.

User documentation: ``docs/reproduce.md``.
"""
