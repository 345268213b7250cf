"""pytest configuration for the tutorials in this folder.

The notebooks run through nbmake (`pytest --nbmake colab/`). Their paired
jupytext scripts (`NN_name.py`) are whole tutorials, not modules: keep the
project-wide `--doctest-modules` from importing (and so executing) them.
"""

collect_ignore_glob = ["[0-9]*.py"]
