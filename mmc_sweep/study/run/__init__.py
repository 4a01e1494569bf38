"""Running a study on Ray: connect, stages, trials, driver callbacks, interrupts, the final report."""
