"""The benchmark's request recorder, written to from the threads that keep a
connector's requests in flight: every request is read back, whole."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from connections.bench.floor import Recorder


class Session:
    def request(self, method, url, *args, **kwargs):
        body = kwargs.get("data")
        return SimpleNamespace(
            request=SimpleNamespace(method=method, url=url, body=body, headers={}),
            content=b"",
            status_code=200,
        )


def test_requests_answered_in_several_threads_are_all_recorded_whole(tmp_path):
    recorder = Recorder(str(tmp_path / "requests.pickle"))
    http = SimpleNamespace(session=Session())
    recorder.wrap("b", http)
    threads, each = 8, 25

    def send(n: int) -> None:
        for i in range(each):
            # a batch body: large enough that writing it lets another thread in
            body = bytes([n]) * 300_000 + f"{n}-{i}".encode()
            http.session.request("PATCH", f"https://app.test/{n}/{i}", data=body)

    workers = [threading.Thread(target=send, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    recorder.close()

    records = list(recorder.records())
    assert recorder.count == threads * each
    assert sorted(r[2] for r in records) == sorted(
        f"https://app.test/{n}/{i}" for n in range(threads) for i in range(each)
    )
    for _side, _method, url, body, *_ in records:
        n, i = url.rsplit("/", 2)[-2:]
        assert body == bytes([int(n)]) * 300_000 + f"{n}-{i}".encode()
