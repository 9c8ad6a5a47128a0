"""Running suites: settings, suite files and scales, the case pipeline (train -> sample -> evaluate ->
store), executors, the results store and its schema, studies and benchmarks."""
