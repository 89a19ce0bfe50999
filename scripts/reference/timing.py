"""The timing the reference scripts share: one untimed call, then the mean of
`repeats` calls, in milliseconds."""
import time


def millis(f, repeats):
    f()
    start = time.perf_counter()
    for _ in range(repeats):
        f()
    return (time.perf_counter() - start) * 1e3 / repeats
