"""A job bus with a resource, a queued, a running (with console output) and a finished job, for the tests."""
import time

SECRET = "very-secret-signing-key-0123456789"


def seed_bus(mongo_url, database):
    """Fill ``database``'s bus; the writer's Bus (close it, drop the database after)."""
    from hither_remote.bus import Bus
    from hither_remote.logs import LogChunk, logs_collection
    from hither_remote.models import BusJob, ResourceHeartbeat

    from hither.models import Database

    writer = Bus(Database(mongo_url=mongo_url, database=database))
    now = time.time()
    writer.heartbeat(ResourceHeartbeat(_id="resource1/node7:99", resource_id="resource1", owner="node7:99",
                                       started=now - 60, last_seen=now - 1, running=1, capacity=4))
    for name, status in (("queued_job", "queued"), ("running_job", "running"), ("done_job", "finished")):
        writer.submit(BusJob(_id=name, resource_id="resource1", function_name=f"f_{name}", status=status,
                             job_hash=f"hash-{name}",
                             document={"kwargs": {"password": SECRET}}, created=now, expires=now + 3600))
    logs_collection(writer).insert_many([
        LogChunk(_id=f"running_job/1/{i}", job_id="running_job", resource_id="resource1", attempt=1, seq=i,
                 text=f"line {i}\n", time=now).model_dump(by_alias=True) for i in range(3)])
    return writer


def add_console(writer, seq, text):
    from hither_remote.logs import LogChunk, logs_collection

    logs_collection(writer).insert_one(LogChunk(_id=f"running_job/1/{seq}", job_id="running_job", resource_id="resource1",
                                                attempt=1, seq=seq, text=text, time=time.time()).model_dump(by_alias=True))
