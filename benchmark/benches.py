"""Speed benchmarks (``benchmark bench NAME``). Importing this module registers the built-in ones.

Each benchmark is a function registered with ``@register_bench(name)`` next to the code it measures; it
returns its report as text and always compares against a baseline measured in the same run.
"""
