"""modules.memory: what a pipeline run does to the garbage collector."""
import gc

from modules import memory


def _in_sight(obj) -> bool:
    return any(o is obj for o in gc.get_objects())


class _Node:
    def __init__(self):
        self.me = self  # a reference cycle: only the garbage collector frees it


def test_startup_frozen_hides_the_objects_alive_on_entry_and_still_collects_new_garbage():
    survivor = _Node()
    with memory.startup_frozen():
        assert gc.get_freeze_count() > 0
        assert not _in_sight(survivor)
        garbage = _Node()
        del garbage
        assert gc.collect() >= 1  # the cycle made inside is found and freed
    assert gc.get_freeze_count() == 0
    assert _in_sight(survivor)  # back in sight after the exit


def test_startup_frozen_inside_another_leaves_the_freeze_to_the_outer_one():
    with memory.startup_frozen():
        frozen = gc.get_freeze_count()
        with memory.startup_frozen():  # a component's step inside a local run
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen  # the inner exit did not unfreeze
    assert gc.get_freeze_count() == 0
