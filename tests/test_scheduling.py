"""TaskScheduler: per-task order, one worker per task, without threads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from agentstream._scheduling import TaskScheduler


@dataclass(frozen=True)
class Item:
    task: Optional[str]
    sequence: int


def test_a_task_is_in_one_workers_hands_at_a_time_and_keeps_its_order() -> None:
    scheduler: TaskScheduler[Item] = TaskScheduler()
    scheduler.put("a", Item("a", 1))
    scheduler.put("a", Item("a", 2))
    taken = scheduler.take()
    assert taken == ("a", [Item("a", 1), Item("a", 2)])
    scheduler.put("a", Item("a", 3))  # arrives while a worker has task a
    assert scheduler.take() is None  # nobody else may take task a meanwhile
    scheduler.done("a")
    assert scheduler.take() == ("a", [Item("a", 3)])


def test_a_stuck_task_holds_no_other_task() -> None:
    scheduler: TaskScheduler[Item] = TaskScheduler()
    scheduler.put("stuck", Item("stuck", 1))
    assert scheduler.take() is not None  # a worker is stuck in it from now on
    for sequence, task in enumerate(["stuck", "b", "c", "b"], start=2):
        scheduler.put(task, Item(task, sequence))
    assert scheduler.take() == ("b", [Item("b", 3), Item("b", 5)])
    assert scheduler.take() == ("c", [Item("c", 4)])
    assert scheduler.take() is None  # only the stuck task has more, and it is taken
    assert scheduler.waiting == 1


def test_unhandled_items_go_back_to_the_front_in_order() -> None:
    scheduler: TaskScheduler[Item] = TaskScheduler()
    for sequence in (1, 2, 3):
        scheduler.put("a", Item("a", sequence))
    task, items = scheduler.take() or (None, [])
    scheduler.put("a", Item("a", 4))
    scheduler.done(task, items[1:])  # handled 1, stopped before 2 and 3
    assert scheduler.take() == ("a", [Item("a", 2), Item("a", 3), Item("a", 4)])


def test_a_stopping_listener_takes_only_tasks_whose_first_item_is_needed() -> None:
    scheduler: TaskScheduler[Item] = TaskScheduler()
    scheduler.put("late", Item("late", 9))
    scheduler.put("early", Item("early", 2))
    scheduler.put("early", Item("early", 12))
    assert scheduler.take(lambda sequence: sequence < 5) == (
        "early",
        [Item("early", 2), Item("early", 12)],
    )
    assert scheduler.take(lambda sequence: sequence < 5) is None
    assert scheduler.take() == ("late", [Item("late", 9)])


def test_idle_and_busy() -> None:
    scheduler: TaskScheduler[Item] = TaskScheduler()
    assert scheduler.idle
    assert not scheduler.busy
    scheduler.put(None, Item(None, 1))  # events without a task are one more "task"
    assert not scheduler.idle
    scheduler.take()
    assert scheduler.busy
    assert not scheduler.idle
    scheduler.done(None)
    assert scheduler.idle
    assert not scheduler.busy
