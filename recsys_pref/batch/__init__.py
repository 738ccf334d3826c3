"""Batch jobs over a whole user base, in bounded memory and resumable (issue 14).

    recsys-pref batch fold-in   --model DIR --interactions FILE [--store URL] [--engine local|ray]
    recsys-pref batch recommend --model DIR --users FILE|all --k 10 --out DIR [--store URL] [--engine local|ray]

    source     the interaction file in user-contiguous row chunks (polars streaming)
    ledger     which chunks a job has finished, so a rerun skips them
    fold_in    the fold-in job: per chunk, the exact inference, then one store transaction
    recommend  the recommend job: per chunk, the serving pipeline, then one Parquet part
    engines    the same per-chunk function run here (`local`) or as Ray Data map_batches (`ray`)
    command    the `recsys-pref batch` command line

Heavy modules load inside the command's handlers, so importing this package is cheap.
"""
