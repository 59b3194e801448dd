"""Drives the official `langsmith` Python SDK against a spawned feedback-dispatch app.

Usage: sdk_compat.py <base-url> [<run-id>]

<base-url> is the app's address (`http://127.0.0.1:PORT`, no `/api/v1`): the SDK then calls the
`/feedback/…` path forms, as it does against hosted LangSmith. <run-id> defaults to a fresh UUID;
the Rust test passes its own so it can check the recorded feedback independently.

Prints one line per step and exits non-zero with a message on the first mismatch. Run by
`tests/api/sdk.rs` with the interpreter of `.venv-test` (made by `scripts/test`).
"""

import os
import sys
import tempfile
import uuid
from datetime import datetime, timedelta, timezone

# The SDK must stay quiet and offline: no tracing, no endpoint, workspace or profile from the
# caller's environment (they would redirect or decorate requests), no proxy for loopback. The
# API key the service requires is the one the test passes as LANGSMITH_API_KEY.
API_KEY = os.environ.get("LANGSMITH_API_KEY", "")
for name in list(os.environ):
    if name.startswith(("LANGSMITH_", "LANGCHAIN_")):
        del os.environ[name]
os.environ["LANGSMITH_API_KEY"] = API_KEY
os.environ["LANGSMITH_TRACING"] = "false"
os.environ["LANGCHAIN_TRACING_V2"] = "false"
# The tracing thread reads /info at start and warns that run compression is off when the
# instance flags do not enable it; nothing is traced here, so skip compression altogether.
os.environ["LANGSMITH_DISABLE_RUN_COMPRESSION"] = "true"
# A profile file in ~ could carry credentials or an endpoint: point the SDK at none.
os.environ["LANGSMITH_CONFIG_FILE"] = os.path.join(tempfile.mkdtemp(prefix="sdk-compat-"), "none.json")
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

import langsmith  # noqa: E402
from langsmith import Client  # noqa: E402
from langsmith.schemas import FeedbackConfig  # noqa: E402
from langsmith.utils import LangSmithError  # noqa: E402


def fail(msg: str) -> None:
    print(f"FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def check(cond: bool, msg: str) -> None:
    if not cond:
        fail(msg)


def step(msg: str) -> None:
    print(f"ok   {msg}", flush=True)


def main() -> None:
    if len(sys.argv) not in (2, 3):
        fail("usage: sdk_compat.py <base-url> [<run-id>]")
    base = sys.argv[1].rstrip("/")
    run_id = sys.argv[2] if len(sys.argv) == 3 else str(uuid.uuid4())
    print(f"langsmith {langsmith.__version__} against {base}, run {run_id}", flush=True)

    check(API_KEY != "", "LANGSMITH_API_KEY is not set: the service requires its key")
    # As a user would: the key comes from LANGSMITH_API_KEY.
    client = Client(api_url=base)
    check(client.api_url == base, f"the SDK rewrote api_url to {client.api_url!r}")

    stranger = Client(api_url=base, api_key="not-the-key")
    try:
        stranger.create_presigned_feedback_token(run_id, "thumbs_up")
        fail("a wrong API key minted a token")
    except LangSmithError as e:
        check("401" in str(e), f"a wrong API key got {e!r}, expected a 401")
    stranger.cleanup()
    step("a wrong API key cannot mint: 401")

    # The SDK swallows a failed /info probe (it only warns), so check that it really parsed.
    info = client.info
    check(
        info.version.startswith("feedback-dispatch-embedded/"),
        f"GET /info did not parse as LangSmithInfo (version {info.version!r})",
    )
    step(f"GET /info parsed: version {info.version}")

    made = {}  # token id -> feedback key, every token minted for the run

    before = datetime.now(timezone.utc)
    thumbs = client.create_presigned_feedback_token(run_id, "thumbs_up", expiration=timedelta(hours=2))
    check(str(thumbs.url).endswith(f"/feedback/tokens/{thumbs.id}"), f"token url {thumbs.url} does not end in its id")
    left = thumbs.expires_at - before
    check(
        timedelta(hours=2) - timedelta(minutes=1) <= left <= timedelta(hours=2) + timedelta(minutes=1),
        f"thumbs_up token expires in {left}, expected 2 hours",
    )
    made[thumbs.id] = "thumbs_up"
    step(f"create_presigned_feedback_token(thumbs_up, expiration=2h) -> {thumbs.id}, expires {thumbs.expires_at}")

    config = FeedbackConfig(type="continuous", min=1, max=5)
    user_score = client.create_presigned_feedback_token(run_id, "user_score", feedback_config=config)
    left = user_score.expires_at - before
    check(
        timedelta(hours=3) - timedelta(minutes=1) <= left <= timedelta(hours=3) + timedelta(minutes=1),
        f"user_score token expires in {left}, expected the 3-hour default",
    )
    made[user_score.id] = "user_score"
    step(f"create_presigned_feedback_token(user_score, continuous 1..5) -> {user_score.id}")

    batch = client.create_presigned_feedback_tokens(run_id, ["thumbs_up", "thumbs_down"])
    check(len(batch) == 2, f"create_presigned_feedback_tokens returned {len(batch)} tokens, expected 2")
    check(len({t.id for t in batch}) == 2, "create_presigned_feedback_tokens returned duplicate ids")
    made[batch[0].id] = "thumbs_up"
    made[batch[1].id] = "thumbs_down"
    step(f"create_presigned_feedback_tokens([thumbs_up, thumbs_down]) -> {[str(t.id) for t in batch]}")

    listed = list(client.list_presigned_feedback_tokens(run_id))
    listed_ids = [t.id for t in listed]
    check(len(listed_ids) == len(set(listed_ids)), f"list_presigned_feedback_tokens repeated ids: {listed_ids}")
    check(
        set(listed_ids) == set(made),
        f"list_presigned_feedback_tokens ids {sorted(map(str, listed_ids))} != minted {sorted(map(str, made))}",
    )
    by_id = {t.id: t for t in listed}
    check(str(by_id[thumbs.id].url) == str(thumbs.url), "listed url differs from the minted one")
    step(f"list_presigned_feedback_tokens -> all {len(listed)} minted tokens")

    client.create_feedback_from_token(thumbs.url, score=1, comment="from the sdk")
    step("create_feedback_from_token(<thumbs_up url>, score=1, comment=...)")

    client.create_feedback_from_token(user_score.id, score=4)
    step("create_feedback_from_token(<user_score id>, score=4)")

    try:
        client.create_feedback_from_token(user_score.url, score=9)
    except LangSmithError as e:
        check("422" in str(e), f"score=9 was refused, but not with a 422: {e}")
        step("create_feedback_from_token(<user_score url>, score=9) raised (422)")
    else:
        fail("score=9 on a continuous 1..5 key was accepted")

    feedback = list(client.list_feedback(run_ids=[run_id]))
    got = sorted((f.key, f.score, f.comment) for f in feedback)
    want = sorted([("thumbs_up", 1, "from the sdk"), ("user_score", 4, None)])
    check(got == want, f"list_feedback recorded {got}, expected {want}")
    for f in feedback:
        check(str(f.run_id) == run_id, f"feedback {f.id} is on run {f.run_id}, expected {run_id}")
        check(f.created_at is not None and f.modified_at is not None, f"feedback {f.id} lacks timestamps")
    step(f"list_feedback(run_ids=[run]) -> {got}")

    only = list(client.list_feedback(run_ids=[run_id], feedback_key=["user_score"]))
    check([(f.key, f.score) for f in only] == [("user_score", 4)], f"list_feedback(feedback_key=[user_score]) -> {only}")
    step("list_feedback(run_ids=[run], feedback_key=[user_score]) -> the one user_score row")

    # Strings, not FeedbackSourceType members: requests would send str(member), "FeedbackSourceType.API".
    api_rows = list(client.list_feedback(run_ids=[run_id], feedback_source_type=["api"]))
    check(len(api_rows) == 2, f"list_feedback(feedback_source_type=[api]) -> {len(api_rows)} rows, expected 2")
    model_rows = list(client.list_feedback(run_ids=[run_id], feedback_source_type=["model"]))
    check(model_rows == [], f"list_feedback(feedback_source_type=[model]) -> {model_rows}, expected none")
    step("list_feedback(feedback_source_type=...) -> 2 rows for [api], none for [model]")

    # Feedback configs with versions (langsmith 0.15's calls; `keys diff|sync` read the same).
    scale = {"type": "continuous", "min": 1, "max": 5}
    first = client.create_feedback_config("sdk_scale", feedback_config=scale)
    check(first.is_first and not first.is_enforced, f"the first config: {first}")
    again = client.create_feedback_config("sdk_scale", feedback_config=scale)
    check(again.id == first.id, "an identical config is not returned unchanged")
    wide = client.create_feedback_config(
        "sdk_scale", feedback_config={"type": "continuous", "min": 0, "max": 10}, is_enforced=True
    )
    check(wide.is_enforced and wide.id != first.id, f"the enforced version: {wide}")
    try:
        client.create_feedback_config("sdk_scale", feedback_config={"type": "continuous", "min": 0, "max": 3})
        fail("a third config was added beside an enforced one")
    except LangSmithError as e:
        check("400" in str(e), f"a config beside an enforced one got {e!r}, expected a 400")
    one = [c.id for c in client.list_feedback_configs(feedback_key=["sdk_scale"])]
    check(one == [wide.id], f"list_feedback_configs -> {one}, expected the enforced one only")
    every = list(client.list_feedback_configs(feedback_key=["sdk_scale"], include_all_configs=True))
    check(len(every) == 2, f"include_all_configs -> {len(every)} configs, expected 2")
    updated = client.update_feedback_config("sdk_scale", feedback_config=scale)
    check(updated.id == wide.id and updated.feedback_config["max"] == 5, f"update_feedback_config -> {updated}")
    by_id = client.update_feedback_config("sdk_scale", config_id=first.id, is_lower_score_better=True)
    check(by_id.id == first.id and by_id.is_lower_score_better, f"update by config_id -> {by_id}")
    client.delete_feedback_config("sdk_scale")
    gone = list(client.list_feedback_configs(feedback_key=["sdk_scale"]))
    check(gone == [], f"after delete_feedback_config: {gone}")
    step("feedback configs: create (identical returned, enforced version, 400 beside it), list, update, delete")
    client.cleanup()

    # A self-hosted user sets api_url to https://host/api/v1: the SDK then calls /api/v1/feedback/…
    # and /api/v1/info. A separate run keeps the first run's rows exact for the Rust test.
    hosted_run = str(uuid.uuid4())
    hosted = Client(api_url=f"{base}/api/v1")
    check(hosted.info.version == info.version, f"GET /api/v1/info -> {hosted.info.version!r}")
    token = hosted.create_presigned_feedback_token(hosted_run, "correctness")
    check([t.id for t in hosted.list_presigned_feedback_tokens(hosted_run)] == [token.id], "/api/v1 token list")
    hosted.create_feedback_from_token(token.url, score=1, value="correct")
    rows = [(f.key, f.score, f.value) for f in hosted.list_feedback(run_ids=[hosted_run])]
    check(rows == [("correctness", 1, "correct")], f"/api/v1 list_feedback -> {rows}")
    step("api_url=<base>/api/v1: mint, list, submit and list feedback on the /api/v1 paths")
    hosted.cleanup()

    print(f"sdk_compat: all steps passed with langsmith {langsmith.__version__}", flush=True)


if __name__ == "__main__":
    main()
