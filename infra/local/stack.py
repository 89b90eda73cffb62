"""The embedded local stack: the synthesized template, run on moto, on 127.0.0.1.

``LocalStack.start(repo_root)`` reads ``cdk.out/<stack>.template.json`` (synthesized on demand),
starts moto's server (in a child process that owns moto's state) and the ERP sandbox, creates the
template's resources, and runs the template's functions, event source mappings and API routes in
this process; state machine executions run in moto and call back here for their Lambda tasks.
See docs/local-stack.md.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import requests
from boto3.dynamodb.types import TypeDeserializer
from botocore.config import Config as BotoConfig

from infra.local import config, operator, partner_events, webhooks
from infra.local.api import ApiServer
from infra.local.firehose import FirehoseForwarder
from infra.local.functions import (
    DispatchServer,
    FunctionRuntime,
    local_common_env,
)
from infra.local.iam_auth import IamAuthorizer, LocalCredential
from infra.local.pollers import CrashPlan, QueuePoller
from infra.local.provision import LocalResources, Provisioner
from infra.local.scenario import ScenarioError, Step, invoice_summary, load_scenario, to_jsonable
from infra.local.schedules import (
    Scheduler,
    ScheduleSpec,
    find_schedule,
    schedule_document,
    scheduled_event,
    target_payload,
)
from infra.local.sfn_events import ExecutionWatcher
from infra.local.template import Template

LOG = logging.getLogger("r2r.local")

# Loggers of the embedded servers: quiet unless asked (moto logs every request and every
# failed state, which are expected outcomes here).
_NOISY_LOGGERS = ("botocore.credentials",)


# The stack's own clients (pollers, watcher, drain) talk to a local server: no long retry backoff,
# so that they notice a stopped moto at once.
_INTERNAL_CLIENT_CONFIG = BotoConfig(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5)

# Long enough for a Step Functions task to exhaust its ErpTransientError retries
# (2 s, backoff 2, 6 attempts: about two minutes of real sleeps).
DEFAULT_SCENARIO_DRAIN_S = 180.0


class DrainTimeout(TimeoutError):
    """The stack did not become idle in time; the message names what is still busy."""

    def __init__(self, timeout: float, busy: list[str]) -> None:
        self.busy = busy
        super().__init__(f"local stack still busy after {timeout:.0f} s: " + "; ".join(busy))


@dataclass
class StackOptions:
    stage: str = "dev"
    template: Path | None = None
    erp: bool = True
    erp_db: Path | None = None
    port_base: int | None = None
    retry_delay_s: int = config.RETRY_DELAY_S
    secret_values: Mapping[str, str] = field(default_factory=dict)
    quiet: bool = True
    function_log_level: str | None = None
    function_env: Mapping[str, str] = field(default_factory=dict)
    saas: bool = True
    schedules: bool = False


def find_repo_root(start: Path | None = None) -> Path:
    """The directory holding pyproject.toml, from ``start`` (default: cwd) upwards."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "infra").is_dir():
            return candidate
    return Path(__file__).resolve().parents[2]


_SYNTH_SCRIPT = (
    "import sys; from pathlib import Path; from infra.synth import ensure_synthesized; "
    "print(ensure_synthesized(stage=sys.argv[1], outdir=Path(sys.argv[2])))"
)


class _Synth:
    """``infra.synth.ensure_synthesized`` in a child process.

    Keeps jsii's Node process out of this long-running one (no stray Node on Ctrl-C, no
    banner), and lets the synth (or its cache check) run while moto starts.
    """

    def __init__(self, repo_root: Path, stage: str) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - this interpreter, a constant script
            [sys.executable, "-c", _SYNTH_SCRIPT, stage, str(repo_root / "cdk.out")],
            cwd=repo_root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def result(self, timeout: float = 600) -> Path:
        try:
            out, err = self._process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            raise RuntimeError(f"synthesizing the CDK app took more than {timeout:.0f} s") from None
        if self._process.returncode != 0:
            tail = "\n".join(err.strip().splitlines()[-25:])
            raise RuntimeError(f"synthesizing the CDK app failed (exit {self._process.returncode}):\n{tail}")
        return Path(out.strip().splitlines()[-1])

    def cancel(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.communicate()


def load_template(repo_root: Path, stage: str, template: Path | None = None) -> Template:
    """The template to run: ``template`` if given, else ``cdk.out/r2r-<stage>.template.json``,
    synthesized (in a child process) when the app's inputs changed."""
    if template is None:
        template = _Synth(repo_root, stage).result()
    return Template.load(Path(template))


class LocalStack:
    """A running local stack. Use ``with LocalStack.start(repo_root) as stack:``."""

    def __init__(self, repo_root: Path, options: StackOptions) -> None:
        self.repo_root = Path(repo_root).resolve()
        self.options = options
        self.stage = options.stage
        self.template: Template | None = None
        self.resources: dict[str, str] = {}
        self.local: LocalResources | None = None
        self.erp: Any = None
        self.erp_url: str | None = None
        self.salesforce: Any = None
        self.salesforce_url: str | None = None
        self.kantata: Any = None
        self.kantata_url: str | None = None
        self.scheduler: Scheduler | None = None
        self.aws_endpoint_url = ""
        self.api_url = ""
        self.api_servers: list[ApiServer] = []
        self.runtime: FunctionRuntime | None = None
        self.pollers: list[QueuePoller] = []
        self.forwarders: list[FirehoseForwarder] = []
        self.crashes = CrashPlan()
        self.watcher: ExecutionWatcher | None = None
        self.startup_s = 0.0
        self._moto: subprocess.Popen[str] | None = None
        self._moto_log: Any = None
        self._dispatch: DispatchServer | None = None
        self._stop = threading.Event()
        self._saved_env: dict[str, str | None] = {}
        self._saved_levels: dict[str, int] = {}
        self._temp_dir: Path | None = None
        self._closed = False
        self._consumed_queue_urls: dict[str, str] = {}
        self._client_local = threading.local()
        self._executor: ThreadPoolExecutor | None = None
        self._session = boto3.session.Session()
        self._session_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        repo_root: Path | str | None = None,
        stage: str = "dev",
        erp_db: Path | str | None = None,
        *,
        template: Path | str | None = None,
        erp: bool = True,
        port_base: int | None = None,
        retry_delay_s: int = config.RETRY_DELAY_S,
        secret_values: Mapping[str, str] | None = None,
        quiet: bool = True,
        function_log_level: str | None = None,
        function_env: Mapping[str, str] | None = None,
        saas: bool = True,
        schedules: bool = False,
    ) -> LocalStack:
        """Start every part; the returned stack is a context manager that stops them."""
        options = StackOptions(
            stage=stage,
            template=Path(template) if template else None,
            erp=erp,
            erp_db=Path(erp_db) if erp_db else None,
            port_base=port_base,
            retry_delay_s=retry_delay_s,
            secret_values=dict(secret_values or {}),
            quiet=quiet,
            function_log_level=function_log_level,
            function_env=dict(function_env or {}),
            saas=saas,
            schedules=schedules,
        )
        stack = cls(Path(repo_root) if repo_root else find_repo_root(), options)
        try:
            stack._start()
        except BaseException:
            stack.close()
            raise
        return stack

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _start(self) -> None:
        started = time.monotonic()
        self._quiet_loggers()
        environment: dict[str, str | None] = {
            "AWS_ACCESS_KEY_ID": config.ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": config.SECRET_ACCESS_KEY,
            "AWS_SESSION_TOKEN": None,
            "AWS_PROFILE": None,
            "AWS_REGION": config.REGION,
            "AWS_DEFAULT_REGION": config.REGION,
            # No X-Ray daemon here.
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        if self.options.function_log_level:
            # Powertools reads its level from the process environment when a handler is imported.
            environment["POWERTOOLS_LOG_LEVEL"] = self.options.function_log_level
        self._set_process_env(environment)
        synth = None if self.options.template else _Synth(self.repo_root, self.stage)
        try:
            self._dispatch = DispatchServer()
            self._dispatch.start()
            self._start_moto(self._dispatch.url)  # meanwhile the synth runs in its own process
            template = synth.result() if synth else self.options.template
        finally:
            if synth is not None:
                synth.cancel()
        assert template is not None
        self.template = Template.load(template)
        if self.options.erp:
            self._start_erp()
        provisioner = Provisioner(
            self.template, self._thread_client, self.repo_root, secret_values=self.options.secret_values
        )
        self.local = provisioner.provision()
        self.resources = dict(self.local.physical)
        common_env = (
            local_common_env(self.aws_endpoint_url, self.erp_url)
            | self._start_saas()
            | dict(self.options.function_env)
        )
        self.runtime = FunctionRuntime(self.local.functions, common_env)
        assert self._dispatch is not None
        self._dispatch.runtime = self.runtime
        for name, error in self.runtime.preload().items():
            LOG.warning("function %s cannot be loaded yet: %s", name, error)
        port = self._port(2)
        for index, api in enumerate(self.local.apis):
            server = ApiServer(
                api, self.runtime, port=port + index if port else 0, authorizer=self._iam_authorizer()
            )
            server.start()
            self.api_servers.append(server)
        if self.api_servers:
            self.api_url = self.api_servers[0].url
        self._start_pollers(self.runtime)
        self.watcher = ExecutionWatcher(
            [sm.arn for sm in self.local.state_machines.values()], self._new_client, self._stop
        )
        self.watcher.start()
        if self.options.schedules:
            self.scheduler = Scheduler(self.local.schedules, self._tick, self._stop)
            self.scheduler.start()
        self.startup_s = time.monotonic() - started
        LOG.info("local stack up in %.1f s: %s", self.startup_s, self.api_url)

    def _iam_authorizer(self) -> IamAuthorizer:
        """IAM authorization of the API's AWS_IAM methods: local credentials per operator role."""
        assert self.local is not None
        return IamAuthorizer(
            [
                LocalCredential(c["access_key_id"], c["secret_access_key"], role)
                for role, c in config.OPERATOR_CREDENTIALS.items()
            ],
            self.local.operator_roles,
            region=config.REGION,
            account_id=config.ACCOUNT_ID,
        )

    def _start_pollers(self, runtime: FunctionRuntime) -> None:
        """The event source mappings' pollers, and one forwarder per delivery stream some rule targets."""
        assert self.local is not None
        for mapping in self.local.mappings:
            poller = QueuePoller(
                mapping,
                runtime,
                self._new_sqs_client,
                self._stop,
                self.options.retry_delay_s,
                crashes=self.crashes,
            )
            if mapping.enabled:
                self._consumed_queue_urls[mapping.queue.name] = mapping.queue.url
            poller.start()
            self.pollers.append(poller)
        for stream in self.local.delivery_streams.values():
            if stream.tap_queue_url is None:
                continue  # no rule delivers to it
            forwarder = FirehoseForwarder(stream, self._thread_client, self._stop)
            # Drain waits for the tap queue like for a consumer's queue.
            self._consumed_queue_urls[str(stream.tap_queue_name)] = stream.tap_queue_url
            forwarder.start()
            self.forwarders.append(forwarder)

    def close(self) -> None:
        """Stop every thread and server; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self.scheduler is not None:
            self.scheduler.join(3)
        for server in self.api_servers:
            server.stop()
        # Stopping moto first ends the pollers' long polls at once instead of after their wait.
        self._stop_moto()
        for poller in self.pollers:
            poller.join(3)
        for forwarder in self.forwarders:
            forwarder.join(3)
        if self.watcher is not None:
            self.watcher.join(3)
        if self.runtime is not None:
            self.runtime.join_background(3)
        if self.erp is not None:
            with contextlib.suppress(Exception):
                self.erp.stop()
        if self.salesforce is not None:
            with contextlib.suppress(Exception):
                self.salesforce.stop()
        if self.kantata is not None:
            with contextlib.suppress(Exception):
                self.kantata.stop()
        if self._dispatch is not None:
            self._dispatch.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._restore_process_env()
        self._restore_loggers()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    # -- parts ----------------------------------------------------------------------------------

    def _port(self, offset: int) -> int:
        return self.options.port_base + offset if self.options.port_base else 0

    def _check_ports(self) -> None:
        """Fail fast on a taken port (moto's server thread would otherwise hang on start)."""
        if not self.options.port_base:
            return
        apis = max(1, len(self.local.apis) if self.local else 1)
        for port in range(self.options.port_base, self.options.port_base + 2 + apis):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind((config.HOST, port))
                except OSError as exc:
                    raise RuntimeError(
                        f"port {port} on {config.HOST} is in use ({exc.strerror}); "
                        "is another local stack running? choose another --port-base, or 0 for any free ports"
                    ) from None

    def _start_moto(self, dispatch_url: str, timeout: float = 60.0) -> None:
        """moto's server in a child process (:mod:`infra.local.moto_process`); wait until it listens."""
        self._check_ports()
        self._moto_log = tempfile.TemporaryFile(mode="w+", prefix="r2r-moto-")  # noqa: SIM115 - closed in close()
        self._moto = subprocess.Popen(  # noqa: S603 - this interpreter, our module
            [
                sys.executable,
                "-m",
                "infra.local.moto_process",
                "--port",
                str(self._port(0)),
                "--dispatch-url",
                dispatch_url,
            ],
            cwd=self.repo_root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if not self.options.quiet else self._moto_log,
            text=True,
        )
        assert self._moto.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline and self._moto.poll() is None:
            ready, _, _ = select.select([self._moto.stdout], [], [], 0.2)
            if ready:
                line = self._moto.stdout.readline()
                break
        if not line.strip():
            raise RuntimeError(f"moto did not start within {timeout:.0f} s: {self._moto_log_tail()}")
        port = int(json.loads(line)["port"])
        self.aws_endpoint_url = f"http://{config.HOST}:{port}"
        requests.post(
            f"{self.aws_endpoint_url}/moto-api/config",
            json={"lambda": {"use_docker": False}, "stepfunctions": {"execute_state_machine": True}},
            timeout=10,
        ).raise_for_status()

    def _moto_log_tail(self) -> str:
        if self._moto_log is None:
            return ""
        self._moto_log.seek(0)
        return "\n".join(self._moto_log.read().strip().splitlines()[-20:]) or "(no output)"

    def _stop_moto(self) -> None:
        process, self._moto = self._moto, None
        if process is not None:
            # moto keeps nothing worth flushing: SIGTERM ends it at once (closing stdin would too,
            # after its server's shutdown poll).
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        if self._moto_log is not None:
            self._moto_log.close()
            self._moto_log = None

    def _start_erp(self) -> None:
        from infra.erp_sandbox import ErpSandbox

        db = self.options.erp_db
        if db is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="r2r-local-"))
            db = self._temp_dir / "erp.sqlite"
        db.parent.mkdir(parents=True, exist_ok=True)
        self.erp = ErpSandbox(
            db, host=config.HOST, port=self._port(1), credentials=dict(config.ERP_CREDENTIALS)
        )
        self.erp_url = str(self.erp.start()).rstrip("/")

    def _start_salesforce(self) -> None:
        try:
            from infra.saas_sandbox import SalesforceSandbox
        except ImportError:
            LOG.warning("the template's functions call Salesforce, but infra.saas_sandbox is not there")
            return
        credentials = config.SALESFORCE_CREDENTIALS
        self.salesforce = SalesforceSandbox(
            host=config.HOST,
            port=self._port(3 + len(self.local.apis) if self.local else 4),
            client_id=credentials["client_id"],
            client_secret=credentials["client_secret"],
        )
        self.salesforce_url = str(self.salesforce.start()).rstrip("/")

    def _start_saas(self) -> dict[str, str]:
        """The SaaS sandboxes some template function calls; returns the base URLs they get."""
        assert self.local is not None
        env: dict[str, str] = {}
        if self.options.saas and self.local.uses_env("SALESFORCE_BASE_URL"):
            self._start_salesforce()
        if self.options.saas and self.local.uses_env("KANTATA_BASE_URL"):
            self._start_kantata()
        if self.salesforce_url:
            env["SALESFORCE_BASE_URL"] = self.salesforce_url
        if self.kantata_url:
            env["KANTATA_BASE_URL"] = self.kantata_url
        return env

    def _start_kantata(self) -> None:
        try:
            from infra.saas_sandbox import KantataSandbox
        except ImportError:
            LOG.warning("the template's functions call Kantata, but infra.saas_sandbox is not there")
            return
        self.kantata = KantataSandbox(
            host=config.HOST,
            port=self._port(4 + len(self.local.apis) if self.local else 5),
            api_token=config.KANTATA_CREDENTIALS["api_token"],
        )
        self.kantata_url = str(self.kantata.start()).rstrip("/")

    def _set_process_env(self, values: Mapping[str, str | None]) -> None:
        for key, value in values.items():
            if key not in self._saved_env:
                self._saved_env[key] = os.environ.get(key)
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def _restore_process_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def _quiet_loggers(self) -> None:
        if not self.options.quiet:
            return
        for name in _NOISY_LOGGERS:
            logger = logging.getLogger(name)
            self._saved_levels[name] = logger.level
            logger.setLevel(logging.CRITICAL)

    def _restore_loggers(self) -> None:
        for name, level in self._saved_levels.items():
            logging.getLogger(name).setLevel(level)
        self._saved_levels.clear()

    # -- clients --------------------------------------------------------------------------------

    def boto3_client(self, service: str, botocore_config: BotoConfig | None = None) -> Any:
        """A boto3 client for ``service`` aimed at the local moto server."""
        # One session (its loaded service models are reused); creating clients is not thread-safe.
        with self._session_lock:
            return self._session.client(
                service,
                endpoint_url=self.aws_endpoint_url,
                region_name=config.REGION,
                aws_access_key_id=config.ACCESS_KEY_ID,
                aws_secret_access_key=config.SECRET_ACCESS_KEY,
                config=botocore_config,
            )

    def _new_client(self, service: str) -> Any:
        return self.boto3_client(service, _INTERNAL_CLIENT_CONFIG)

    def _new_sqs_client(self) -> Any:
        return self.boto3_client("sqs", _INTERNAL_CLIENT_CONFIG)

    def _thread_client(self, service: str) -> Any:
        cache = self._client_local.__dict__.setdefault("clients", {})
        if service not in cache:
            cache[service] = self.boto3_client(service, _INTERNAL_CLIENT_CONFIG)
        return cache[service]

    # -- drain ----------------------------------------------------------------------------------

    def busy(self, everything: bool = True, only: Collection[str] | None = None) -> list[str]:
        """What is still at work: running handlers, API requests, queue messages, executions.

        The cheap in-process checks come first; with ``everything=False`` the first busy kind is
        enough (drain's loop), otherwise every busy thing is named (drain's timeout message).
        ``only`` (function folders, e.g. ``{"time_posting"}``) limits the functions and queues looked at
        to those functions' (API requests and executions are always looked at).
        """
        busy: list[str] = []
        names, queues = self._scope(only)
        if self.runtime is not None:
            busy.extend(
                f"function {name}: {n} invocation(s) running"
                for name, n in self.runtime.running().items()
                if names is None or name in names
            )
        for server in self.api_servers:
            if server.in_flight:
                busy.append(f"API {server.api.name}: {server.in_flight} request(s) in progress")
        busy.extend(f"delivery stream {f.spec.name}: writing to S3" for f in self.forwarders if f.busy)
        if busy and not everything:
            return busy
        watched = [(n, url) for n, url in self._consumed_queue_urls.items() if queues is None or n in queues]
        busy.extend(line for line in self._pool().map(self._queue_busy, watched) if line)
        if busy and not everything:
            return busy
        if self.watcher is not None and self.watcher.state_machine_arns:
            running, emitted = self.watcher.sync()
            busy.extend(f"execution RUNNING: {arn}" for arn in sorted(running))
            if emitted:
                busy.append(f"{emitted} aws.states event(s) just put on the default bus")
        return busy

    def _scope(self, only: Collection[str] | None) -> tuple[set[str] | None, set[str] | None]:
        """The function names and consumed queue names of the function folders ``only`` (None: all)."""
        if only is None or self.local is None:
            return None, None
        names = {spec.name for spec in self.local.functions.values() if spec.source_dir.name in only}
        queues = {m.queue.name for m in self.local.mappings if m.function_name in names}
        return names, queues

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="r2r-drain")
        return self._executor

    def _queue_busy(self, queue: tuple[str, str]) -> str | None:
        name, url = queue
        attributes = self._thread_client("sqs").get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        visible = int(attributes.get("ApproximateNumberOfMessages", 0))
        in_flight = int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))
        delayed = int(attributes.get("ApproximateNumberOfMessagesDelayed", 0))
        if visible or in_flight or delayed:
            return f"queue {name}: {visible} visible, {in_flight} in flight, {delayed} delayed"
        return None

    def drain(
        self,
        timeout: float = 60.0,
        stable_s: float = 0.5,
        interval_s: float = 0.1,
        only: Collection[str] | None = None,
    ) -> float:
        """Wait until nothing is left to do (stable for ``stable_s``); returns the seconds waited.

        ``only`` (function folders): wait for those functions and their queues alone (see :meth:`busy`).
        Raises :class:`DrainTimeout` naming what is still busy after ``timeout`` seconds.
        """
        started = time.monotonic()
        deadline = started + timeout
        idle_since: float | None = None
        while True:
            busy = self.busy(everything=False, only=only)
            now = time.monotonic()
            if busy:
                idle_since = None
                if now > deadline:
                    raise DrainTimeout(timeout, self.busy(only=only) or busy)
            else:
                idle_since = idle_since or now
                if now - idle_since >= stable_s:
                    return now - started
            time.sleep(interval_s)

    # -- webhooks and scenarios -----------------------------------------------------------------

    def invoke(self, function: str, event: Any) -> Any:
        """Run one of the template's functions with ``event`` (logical id, name or source folder)."""
        assert self.local is not None and self.runtime is not None
        return self.runtime.invoke(self.local.function(function).name, event)

    def inject_consumer_crash(self, function: str, *, after_records: int, times: int = 1) -> None:
        """Test hook: the next ``times`` batches of ``function``'s queue with more than
        ``after_records`` records crash after processing that many (see :class:`CrashPlan`)."""
        assert self.local is not None
        self.crashes.arm(self.local.function(function).name, after_records=after_records, times=times)

    def poller_stats(self) -> dict[str, dict[str, int]]:
        """Per consumer (function source folder): batches, records, failed, deleted, crashes."""
        assert self.local is not None
        totals: dict[str, dict[str, int]] = {}
        for poller in self.pollers:
            spec = self.local.function_by_name(poller.mapping.function_name)
            name = spec.source_dir.name if spec is not None else poller.mapping.function_name
            current = totals.setdefault(name, {})
            for key, value in poller.stats.as_dict().items():
                current[key] = current.get(key, 0) + value
        return totals

    def tick(self, schedule: str) -> int:
        """Fire one tick of a scheduled rule (by logical id, name, or the function it feeds).

        Returns the number of targets that received the ``Scheduled Event``.
        """
        assert self.local is not None
        return self._tick(find_schedule(self.local.schedules, schedule, self._consumers()))

    def _consumers(self) -> dict[str, str]:
        assert self.local is not None
        consumers = {f.name: f.source_dir.name for f in self.local.functions.values()}
        for mapping in self.local.mappings:
            spec = self.local.function_by_name(mapping.function_name)
            if spec is not None:
                consumers[mapping.queue.url] = spec.source_dir.name
        return consumers

    def _tick(self, schedule: ScheduleSpec) -> int:
        event = scheduled_event(schedule.arn)
        delivered = 0
        for target in schedule.targets:
            payload = target_payload(target, event)
            if target.queue_url:
                self._thread_client("sqs").send_message(QueueUrl=target.queue_url, MessageBody=payload)
                delivered += 1
            elif target.function_name and self.runtime is not None:
                self.runtime.invoke_async(target.function_name, json.loads(payload))
                delivered += 1
        LOG.info("ticked %s (%s): %d target(s)", schedule.logical_id, schedule.expression, delivered)
        return delivered

    def post_webhook(
        self,
        source: str,
        body: Any = None,
        webhook_id: str | None = None,
        *,
        raw_body: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        sign: bool = True,
        path: str | None = None,
        timestamp: int | None = None,
    ) -> webhooks.Delivery:
        """POST one signed delivery to ``/v1/webhooks/<source>`` (or ``path``) of the local API."""
        if not self.api_url:
            raise RuntimeError("the template has no API Gateway REST API to post to")
        return webhooks.post(
            self.api_url,
            source,
            body,
            webhook_id=webhook_id or f"msg_{uuid.uuid4().hex}",
            raw_body=raw_body,
            content_type=content_type,
            headers=headers,
            sign=sign,
            path=path,
            timestamp=timestamp,
        )

    def operator_request(
        self, method: str, path: str, *, role: str | None, body: Any = None
    ) -> operator.OperatorAnswer:
        """Call the operator API (``/ops/...``) signed with ``role``'s local credentials (None: unsigned)."""
        if not self.api_url:
            raise RuntimeError("the template has no API Gateway REST API to call")
        return operator.call(self.api_url, method, path, role=role, body=body)

    def run_scenario(
        self, directory: Path | str, drain_timeout: float = DEFAULT_SCENARIO_DRAIN_S, stable_s: float = 0.5
    ) -> dict[str, Any]:
        """Post every delivery of ``directory`` in name order, draining after each; the report."""
        started = time.monotonic()
        steps = load_scenario(Path(directory))
        deliveries: list[dict[str, Any]] = []
        drain_error: str | None = None
        for step in steps:
            if step.kantata is not None:
                entry = self._kantata_step(step)
            else:
                entry = self._tick_step(step) if step.tick else self._webhook_step(step)
            try:
                entry["drain_s"] = round(self.drain(timeout=drain_timeout, stable_s=stable_s), 3)
            except DrainTimeout as exc:
                drain_error = f"after {step.file}: {exc}"
                entry["drain_s"] = None
                deliveries.append(entry)
                break
            deliveries.append(entry)
        report = self.report()
        report["scenario"] = str(directory)
        report["deliveries"] = deliveries
        report["drain_error"] = drain_error
        report["ok"] = (
            drain_error is None and all(d["ok"] for d in deliveries) and len(deliveries) == len(steps)
        )
        report["duration_s"] = round(time.monotonic() - started, 3)
        return report

    def _tick_step(self, step: Step) -> dict[str, Any]:
        assert step.tick is not None
        try:
            targets = self.tick(step.tick)
        except LookupError as exc:
            raise ScenarioError(f"{step.file}: {exc}") from exc
        return {
            "file": step.file,
            "kind": "tick",
            "schedule": step.tick,
            "targets": targets,
            "ok": targets > 0,
        }

    def _kantata_step(self, step: Step) -> dict[str, Any]:
        """Seed records in the Kantata sandbox, link a workspace to its engagement, script 429s."""
        assert step.kantata is not None
        if self.kantata is None:
            raise ScenarioError(f"{step.file}: the stack runs no Kantata sandbox")
        action = step.kantata
        seeded: dict[str, list[str]] = {}
        order = ("workspaces", "roles", "users", "time_entries", "expenses")
        seed = action.get("seed") or {}
        for resource in sorted(seed, key=lambda r: order.index(r) if r in order else len(order)):
            seeded[resource] = [self.kantata.seed(resource, dict(record)) for record in seed[resource]]
        linked = None
        if action.get("link"):
            from r2r_core.flows.kantata_poll import link_workspace

            link = action["link"]
            store, audit = self.state_and_audit()
            linked = link_workspace(
                store,
                audit,
                workspace_id=str(link["workspace_id"]),
                engagement_id=str(link["engagement_id"]),
                default_role=link.get("default_role"),
            )
        throttle = action.get("throttle")
        if throttle:
            self.kantata.throttle(int(throttle.get("count", 1)), throttle.get("retry_after"))
        return {"file": step.file, "kind": "kantata", "seeded": seeded, "linked": linked, "ok": True}

    def state_and_audit(self) -> tuple[Any, Any]:
        """The StateTable and AuditTable of the stack (the tables the functions name in their environment)."""
        from r2r_core.state import AuditLog, StateStore

        assert self.local is not None
        dynamodb = self.boto3_client("dynamodb")
        tables = self.local.tables
        [state] = [name for lid, name in tables.items() if "State" in lid]
        [audit] = [name for lid, name in tables.items() if "Audit" in lid]
        return StateStore(state, dynamodb), AuditLog(audit, dynamodb)

    def _webhook_step(self, step: Step) -> dict[str, Any]:
        delivery = self._deliver(step)
        return {
            "file": step.file,
            "kind": "webhook",
            "source": step.source,
            "webhook_id": step.webhook_id,
            "path": delivery.path,
            "status": delivery.status,
            "expected": step.expect_status or "2xx",
            "ok": step.expected(delivery.status),
            "response": delivery.json if delivery.json is not None else delivery.text,
        }

    def _deliver(self, step: Step) -> webhooks.Delivery:
        try:
            return self.post_webhook(
                step.source,
                step.body,
                step.webhook_id,
                raw_body=step.raw_body,
                content_type=step.content_type,
                headers=step.headers,
                sign=step.sign,
                path=step.path,
            )
        except ValueError as exc:
            raise ScenarioError(f"{step.file}: {exc}") from exc

    def put_file(self, key: str, body: bytes, *, drain: bool = True) -> dict[str, Any]:
        """Drop a file into the raw archive bucket (as a sender would); S3 notifies the default bus
        (moto forwards Object Created to EventBridge for buckets with EventBridge notifications on)."""
        assert self.local is not None
        bucket = self.local.bucket_for_env("RAW_BUCKET_NAME")
        if bucket is None:
            raise LookupError("the template has no bucket")
        response = self.boto3_client("s3").put_object(Bucket=bucket, Key=key, Body=body)
        if drain:
            self.drain()
        return {"bucket": bucket, "key": key, "version_id": response.get("VersionId")}

    def put_partner_event(
        self,
        detail_type: str,
        detail: Mapping[str, Any] | str,
        *,
        source: str | None = None,
        drain: bool = True,
    ) -> dict[str, Any]:
        """Put one event on the template's partner event bus as the partner would (Salesforce Event Relay:
        ``source`` is the bus's partner event source, ``detail-type`` the event name, e.g.
        ``OpportunityChangeEvent``; see :func:`infra.local.partner_events.change_event`)."""
        assert self.local is not None
        if not self.local.partner_buses:
            raise LookupError("the template has no partner event bus")
        logical_id, partner_source = next(iter(self.local.partner_buses.items()))
        entry = {
            "Source": source or partner_source,
            "DetailType": detail_type,
            "Detail": detail if isinstance(detail, str) else json.dumps(detail),
            "EventBusName": self.local.buses[logical_id],
        }
        answer = self.boto3_client("events").put_events(Entries=[entry])
        if answer.get("FailedEntryCount"):
            raise RuntimeError(f"the partner bus refused the event: {answer['Entries']}")
        if drain:
            self.drain()
        return {
            "bus": entry["EventBusName"],
            "source": entry["Source"],
            "event_id": answer["Entries"][0]["EventId"],
        }

    def put_change_event(
        self, entity: str, record_ids: list[str], change_type: str = "UPDATE", **kwargs: Any
    ) -> dict[str, Any]:
        """A Salesforce Change Data Capture event on the partner bus (``partner_events.change_event``)."""
        drain = kwargs.pop("drain", True)
        return self.put_partner_event(
            partner_events.detail_type(entity),
            partner_events.change_event(entity, record_ids, change_type, **kwargs),
            drain=drain,
        )

    # -- observations ---------------------------------------------------------------------------

    def analytics_objects(self) -> dict[str, list[dict[str, Any]]]:
        """Every object the template's delivery streams wrote, by key, with its events (newline JSON)."""
        assert self.local is not None
        s3 = self.boto3_client("s3")
        found: dict[str, list[dict[str, Any]]] = {}
        for stream in self.local.delivery_streams.values():
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=stream.bucket)
            for item in (obj for page in pages for obj in page.get("Contents", [])):
                body = s3.get_object(Bucket=stream.bucket, Key=item["Key"])["Body"].read()
                if item["Key"].endswith(".gz"):
                    body = gzip.decompress(body)
                found[item["Key"]] = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        return found

    def erp_records(self) -> dict[str, list[dict[str, Any]]]:
        """Every record of the ERP sandbox, by type (empty without a sandbox)."""
        if not self.erp_url:
            return {}
        response = requests.get(f"{self.erp_url}/_sandbox/records", timeout=10)
        response.raise_for_status()
        document = response.json()
        if isinstance(document, dict) and isinstance(document.get("records"), dict):
            document = document["records"]
        return {str(k): list(v) for k, v in dict(document).items()}

    def exceptions(self) -> list[dict[str, Any]]:
        """Exception records for finance: StateTable items whose pk starts with ``EXC#``."""
        assert self.local is not None
        table = self.local.table_for_env("STATE_TABLE_NAME")
        if table is None:
            return []
        dynamodb = self._thread_client("dynamodb")
        deserializer = TypeDeserializer()
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": table,
            "FilterExpression": "begins_with(pk, :exc)",
            "ExpressionAttributeValues": {":exc": {"S": "EXC#"}},
        }
        while True:
            page = dynamodb.scan(**kwargs)
            for raw in page.get("Items") or []:
                items.append(to_jsonable({k: deserializer.deserialize(v) for k, v in raw.items()}))
            if not page.get("LastEvaluatedKey"):
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(items, key=lambda item: str(item.get("pk")))

    def queue_depths(self, dlq_only: bool = False) -> dict[str, int]:
        """Messages (visible + in flight + delayed) per queue name."""
        assert self.local is not None
        dlqs = self.local.dlq_arns()
        sqs = self._thread_client("sqs")
        depths: dict[str, int] = {}
        for queue in self.local.queues.values():
            if dlq_only and queue.arn not in dlqs:
                continue
            attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])["Attributes"]
            depths[queue.name] = sum(
                int(attributes.get(key, 0))
                for key in (
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                )
            )
        return depths

    def saas_records(self) -> dict[str, Any]:
        """Records of the SaaS sandboxes the stack started (``{"salesforce": {object: [...]}}``,
        ``{"kantata": {resource: [...]}}``)."""
        records: dict[str, Any] = {}
        if self.salesforce is not None:
            records["salesforce"] = to_jsonable(self.salesforce.records())
        if self.kantata is not None:
            records["kantata"] = to_jsonable(self.kantata.records())
        return records

    def report(self) -> dict[str, Any]:
        """The observable outcome: ERP (and SaaS) records, invoices, exceptions, DLQ depths."""
        records = self.erp_records()
        return {
            "erp": {"records": records},
            "invoices": [invoice_summary(r) for r in records.get("invoice", [])],
            "saas": self.saas_records(),
            "exceptions": self.exceptions(),
            "dlq_depths": self.queue_depths(dlq_only=True),
        }

    def describe(self) -> dict[str, Any]:
        """What ``r2r local up`` writes to ``.r2r/local.json``."""
        assert self.local is not None
        local = self.local
        dlqs = local.dlq_arns()
        consumers = self._consumers()
        return {
            "stack": local.stack_name,
            "stage": self.stage,
            "api_url": self.api_url,
            "aws_endpoint_url": self.aws_endpoint_url,
            "erp_url": self.erp_url,
            "salesforce_url": self.salesforce_url,
            "kantata_url": self.kantata_url,
            "region": config.REGION,
            "account_id": config.ACCOUNT_ID,
            "queues": {
                q.logical_id: {"name": q.name, "url": q.url, "arn": q.arn, "dlq": q.arn in dlqs}
                for q in local.queues.values()
            },
            "buses": {**local.buses, "default": "default"},
            "partner_event_sources": dict(local.partner_buses),
            "tables": dict(local.tables),
            "buckets": dict(local.buckets),
            "bucket": local.bucket_for_env("RAW_BUCKET_NAME"),
            "secrets": dict(local.secrets),
            "state_machines": {k: v.arn for k, v in local.state_machines.items()},
            "state_machine_arn": next((v.arn for v in local.state_machines.values()), None),
            "functions": {k: v.name for k, v in local.functions.items()},
            "schedules": {s.logical_id: schedule_document(s, consumers) for s in local.schedules},
            "delivery_streams": {
                s.logical_id: {
                    "name": s.name,
                    "bucket": s.bucket,
                    "prefix": s.prefix,
                    "tap_queue": s.tap_queue_url,
                }
                for s in local.delivery_streams.values()
            },
            "glue_tables": {k: {"database": d, "table": t} for k, (d, t) in local.glue_tables.items()},
            "webhook_secrets": dict(config.WEBHOOK_SECRETS),
            "kms_keys": dict(local.keys),
            "operator_api": {
                "url": f"{self.api_url}ops" if self.api_url else None,
                "roles": {
                    label: {
                        "arn": role.arn,
                        **config.OPERATOR_CREDENTIALS.get(label, {}),
                    }
                    for label, role in local.operator_roles.items()
                },
            },
            "routes": [
                {
                    "method": r.http_method,
                    "path": r.path,
                    "function": r.function_name,
                    "auth": r.authorization,
                }
                for api in local.apis
                for r in api.routes
            ],
        }


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
