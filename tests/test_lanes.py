"""`make test-fast` leaves out what starts a worker, a browser or Orthanc, judged by the fixtures."""

from tests.lanes import lanes_of


def test_a_test_is_in_the_lane_of_what_it_starts():
    # `worker` depends on the session's worker process, so both names are in its closure.
    assert lanes_of({"worker", "celery_worker_process", "transactional_db"}) == {"worker"}
    assert lanes_of({"page", "chromium", "live_server"}) == {"browser"}
    assert lanes_of({"orthanc", "live_server"}) == {"slow"}
    assert lanes_of({"client", "alice", "db"}) == set()


def test_this_test_is_in_the_fast_lane(request):
    assert not {mark.name for mark in request.node.iter_markers()} & {"worker", "browser", "slow"}
