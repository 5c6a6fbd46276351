"""Reads a run's TensorBoard event files with the tensorboard package's own
reader (EventAccumulator, which checks every record's CRC) and prints each
scalar as a JSON line: {"tag", "step", "value", "wall_time"}. Used by
TensorBoard.* in tests/train_test.cpp to compare undo's events with its
metrics.jsonl.

    python read_events.py RUN_DIR/tensorboard
"""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

accumulator = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
accumulator.Reload()
for tag in sorted(accumulator.Tags()["scalars"]):
    for event in accumulator.Scalars(tag):
        print(json.dumps({"tag": tag, "step": event.step, "value": event.value, "wall_time": event.wall_time}))
