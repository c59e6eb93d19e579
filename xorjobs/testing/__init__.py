"""What the test suite, the benchmarks and the scripts share (as Celery ships ``celery.contrib.testing``).

``processes``: start the real ``xorjobs worker`` / ``xorjobs api`` commands and wait for them.
``seed_scripts``: the seed document's own training loops, the live yardstick of every fidelity check
(it imports torch). Neither ``tests/`` nor ``bench/`` may import the other, so this is the one place
both read. The API, the workers and the CLI never import this package.
"""
