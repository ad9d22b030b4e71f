"""`python -m bench`: the benchmark of every path, each figure beside a baseline measured
back to back in the same run (absolute numbers on a shared machine are noise; ratios are not).
"""
