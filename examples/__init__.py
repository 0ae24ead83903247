"""Applications served by ferrule: the README's app, the seed's programs, Flask and Django.

Run any of them from the repository root, for example ``ferrule examples.hello:app``;
``tests/blackbox/test_examples.py`` serves each one with a real ``ferrule`` process.
"""
