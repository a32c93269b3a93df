"""A new Django site adopts rchat from its built wheel, as the README's recipe says.

Nothing here uses this checkout's code or settings: rchat is built into a wheel and
installed into a new virtualenv; ``django-admin startproject mysite`` makes the site;
the recipe's files (docs/example_site/) are applied exactly as its README says; then
the site runs as a team would run it, with ``runserver``, a Celery worker and beat on
Redis, and the R-Chat sandbox from the wheel. An end user writes; an operator answers
from admin and an agent from the inbox; both replies reach the sandbox.

The only lines the test adds beyond the recipe put the site's database on this run's
PostgreSQL server (startproject's SQLite file is not meant for a web server and a
worker at once).
"""

import os
import re
import shutil
import subprocess
import sys
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from rchat.sandbox import SandboxClient
from tests.conftest import amqp_url, redis_url
from tests.processes import ROOT, eventually, stop

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(600)]

RECIPE = ROOT / "docs" / "example_site"
TOKEN = "cdt_adoption_token_0001"
PASSWORD = "adopt-rchat-pass-1"
#: The README's worker and beat command lines, after ``celery`` (tests/test_readme.py).
WORKER = ("-A", "mysite", "worker", "--loglevel=info")
BEAT = ("-A", "mysite", "beat", "--loglevel=info")


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database_server():
    """(host, port, user) of this run's PostgreSQL server, from DATABASE_URL."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return parts.hostname or "127.0.0.1", parts.port or 5432, parts.username or "postgres"


def _admin_sql(statement):
    import psycopg

    host, port, user = _database_server()
    with psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True) as c:
        c.execute(statement)


class Site:
    """The new site: its virtualenv, its directory and how to run its commands."""

    def __init__(self, root, venv, env):
        self.root, self.venv, self.env = root, venv, env
        self.python = str(venv / "bin" / "python")

    def manage(self, *args, input=None, check=True, env=None):
        result = subprocess.run(  # noqa: S603 - the test site's own manage.py
            [self.python, "manage.py", *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def start(self, name, argv, *, ready, env=None):
        """Start a long-running process of the site; wait until its log shows ``ready``."""
        log = self.root / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(  # noqa: S603 - the test site's own commands
                argv,
                cwd=self.root,
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process.log = log
        text = eventually(
            lambda: log.read_text("utf-8", "replace"),
            lambda text: ready(text) or process.poll() is not None,
            timeout=60,
            what=f"the site's {name} to start",
        )
        if process.poll() is not None:
            pytest.fail(f"The site's {name} exited:\n{text[-4000:]}")
        return process

    @property
    def url(self):
        return f"http://127.0.0.1:{self.web_port}"

    def start_sandbox(self):
        """``rchat_sandbox`` from the wheel, posting to this site's one webhook URL."""
        process = self.start(
            "sandbox",
            [
                *(self.python, "manage.py", "rchat_sandbox", "--port", "0", "--token", TOKEN),
                *("--webhook-url", f"{self.url}/rchat/webhook/"),
            ],
            ready=lambda text: "listening on" in text,
        )
        first_line = process.log.read_text("utf-8").split("\n", 1)[0]
        return process, SandboxClient(first_line.rsplit(" ", 1)[-1].strip())

    def register(self, sandbox):
        """``rchat_register`` the sandbox's token, read from standard input."""
        return self.manage(
            *("rchat_register", "--name", "shop", "--token", "-", "--base-url", sandbox.url),
            input=TOKEN + "\n",
        ).stdout.splitlines()


@pytest.fixture(scope="module")
def site(built_dists, tmp_path_factory):
    """A brand-new site with rchat installed from the wheel and the recipe applied."""
    _sdist, wheel = built_dists
    base = tmp_path_factory.mktemp("adoption")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # noqa: S603
    install = subprocess.run(  # noqa: S603 - pip installing the wheel just built
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[postgres]"],
        capture_output=True,
        text=True,
        check=False,
    )
    if install.returncode != 0:
        pytest.fail(f"pip install of the wheel failed:\n{install.stdout}\n{install.stderr}")

    root = base / "mysite"
    root.mkdir()
    subprocess.run(  # noqa: S603 - Django's own project template
        [str(venv / "bin" / "django-admin"), "startproject", "mysite", str(root)], check=True
    )
    # The recipe, applied as the README says (docs/example_site/README.md's table).
    package = root / "mysite"
    for fragment, target in (
        ("append_to_settings.py", "settings.py"),
        ("append_to_urls.py", "urls.py"),
    ):
        with open(package / target, "a", encoding="utf-8") as out:
            out.write("\n\n" + (RECIPE / fragment).read_text("utf-8"))
    for name in ("celery.py", "__init__.py"):
        shutil.copyfile(RECIPE / "mysite" / name, package / name)

    # Beyond the recipe: the site's database on this run's PostgreSQL server.
    database = f"rchat_site_{uuid.uuid4().hex[:8]}"
    host, port, user = _database_server()
    _admin_sql(f'CREATE DATABASE "{database}"')
    with open(package / "settings.py", "a", encoding="utf-8") as out:
        out.write(
            "\n\n# --- The adoption test's own (not the recipe): PostgreSQL, not SQLite.\n"
            f"DATABASES = {{'default': {{'ENGINE': 'django.db.backends.postgresql', "
            f"'NAME': {database!r}, 'HOST': {host!r}, 'PORT': {port!r}, 'USER': {user!r}}}}}\n"
        )

    broker = urlsplit(redis_url())
    # A Redis database of its own, so no other test's worker takes the site's tasks.
    broker = urlunsplit(broker._replace(path="/13"))
    import redis

    redis.Redis.from_url(broker).flushdb()
    web_port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "PYTHONPATH", "DATABASE_URL", "CACHE_URL"}
        and not key.startswith(("RCHAT_", "CELERY_"))
    }
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "CELERY_BROKER_URL": broker,
            "CACHE_URL": urlunsplit(urlsplit(broker)._replace(path="/14")),
            "RCHAT_SITE_URL": f"http://127.0.0.1:{web_port}",
            "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    made = Site(root, venv, env)
    made.web_port, made.broker, made.wheel = web_port, broker, wheel
    # Step 5 of the recipe, the encryption key, then its step 6's migrate.
    made.env["RCHAT_ENCRYPTION_KEYS"] = made.manage("rchat_generate_key").stdout.strip()
    made.manage("migrate", "--noinput")
    try:
        yield made
    finally:
        _admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _login(base, login_path, username):
    """A requests session signed in through a login form, as a browser would."""
    session = requests.Session()
    page = session.get(base + login_path, timeout=30)
    assert page.status_code == 200, (login_path, page.status_code)
    # The form's hidden "next", as a browser would send it back.
    next_field = re.search(r'name="next" value="([^"]*)"', page.text)
    answer = session.post(
        base + login_path,
        data={
            "username": username,
            "password": PASSWORD,
            "next": next_field.group(1) if next_field else "",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": base + login_path},
        timeout=30,
    )
    assert answer.status_code == 200 and login_path not in answer.url, answer.text[:2000]
    return session


def _post_form(session, url, data, files=None):
    return session.post(
        url,
        data={**data, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        files=files,
        headers={"Referer": url},
        timeout=30,
    )


#: A 1 by 1 PNG, as an agent would attach a picture.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def test_a_new_site_installs_the_wheel_applies_the_recipe_and_answers_end_users(site):
    # rchat and Django come from the new virtualenv, not from this checkout.
    where = site.manage(
        "shell", "-c", "import django, rchat; print(rchat.__file__, django.get_version())"
    )
    rchat_file, django_version = where.stdout.splitlines()[-1].split()
    assert rchat_file.startswith(str(site.venv)), rchat_file
    assert not rchat_file.startswith(str(ROOT / "rchat"))

    checked = site.manage("check", "--database", "default", "--fail-level", "WARNING")
    assert "System check identified no issues (0 silenced)." in checked.stdout, checked.stdout
    # The Thai catalogue came with the wheel, compiled.
    thai = site.manage(
        "shell",
        "-c",
        "from django.utils import translation; translation.activate('th'); "
        "print(translation.gettext('Sign in to the inbox'))",
    )
    assert thai.stdout.splitlines()[-1] not in ("", "Sign in to the inbox")

    # People, and the two groups with the permissions each needs.
    site.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; U = get_user_model(); "
        f"[U.objects.create_user(n, password={PASSWORD!r}) for n in ('olivia', 'arthit')]",
    )
    groups = site.manage("rchat_groups", "--operator", "olivia", "--agent", "arthit").stdout
    assert "olivia is in R-Chat operators." in groups and "arthit is in R-Chat agents." in groups

    base = site.url
    processes = []
    try:
        processes.append(
            site.start(
                "web",
                [site.python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{site.web_port}"],
                ready=lambda text: "Quit the server with" in text,
            )
        )
        processes.append(
            site.start(
                "worker",
                [str(site.venv / "bin" / "celery"), *WORKER],
                ready=lambda text: " ready." in text,
            )
        )
        processes.append(
            site.start(
                "beat",
                [
                    *(str(site.venv / "bin" / "celery"), *BEAT),
                    *("--schedule", str(site.root / "celerybeat-schedule")),
                ],
                ready=lambda text: "beat: Starting..." in text,
            )
        )
        sandbox_process, sandbox = site.start_sandbox()
        processes.append(sandbox_process)
        registered = site.register(sandbox)
        assert registered[-2:] == ["Paste this webhook URL into R-Chat:", f"{base}/rchat/webhook/"]
        assert TOKEN not in "\n".join(registered)

        entry = sandbox.send_as_user("adopt-1", "สวัสดีครับ มีสินค้าไหม", channel="line", name="Somchai")
        assert entry["webhook"]["ok"], entry["webhook"]

        # An operator answers from admin.
        operator = _login(base, "/admin/login/", "olivia")
        rooms = operator.get(f"{base}/rchat/api/rooms/?chat_id=adopt-1", timeout=30).json()
        (room,) = rooms["results"]
        change_url = f"{base}/admin/rchat/chatroom/{room['id']}/change/"
        assert "สวัสดีครับ มีสินค้าไหม" in operator.get(change_url, timeout=30).text
        answer = _post_form(
            operator, change_url, {"_reply": "1", "reply-type": "text", "reply-text": "มีค่ะ"}
        )
        assert answer.status_code == 200 and "Reply queued for delivery." in answer.text

        # An agent (not staff) answers from the inbox, after its own sign-in page.
        anonymous = requests.get(f"{base}/rchat/inbox/", timeout=30)
        assert urlsplit(anonymous.url).path == "/rchat/login/" and anonymous.status_code == 200
        agent = _login(base, "/rchat/login/", "arthit")
        room_url = f"{base}/rchat/inbox/{room['id']}/"
        answer = _post_form(agent, room_url, {"type": "text", "text": "ราคา 290 บาทค่ะ"})
        assert (
            answer.status_code == 200 and urlsplit(answer.url).path == f"/rchat/inbox/{room['id']}/"
        )

        received = eventually(
            lambda: sandbox.received("adopt-1"),
            lambda got: len(got) >= 2,
            timeout=60,
            what="both replies to reach the sandbox",
        )
        assert [r["message"] for r in received] == [
            {"type": "text", "data": "มีค่ะ"},
            {"type": "text", "data": "ราคา 290 บาทค่ะ"},
        ]

        # A broadcast from the command line reaches the room after what it already had.
        broadcast = site.manage(
            *("rchat_broadcast", "--room-ids", str(room["id"])),
            *("--text", "ร้านเปิด 10 โมงค่ะ", "--name", "Opening hours"),
        )
        assert "to 1 chat rooms." in broadcast.stdout, broadcast.stdout
        received = eventually(
            lambda: sandbox.received("adopt-1"),
            lambda got: len(got) >= 3,
            timeout=60,
            what="the broadcast to reach the sandbox",
        )
        assert received[-1]["message"] == {"type": "text", "data": "ร้านเปิด 10 โมงค่ะ"}

        # The agent attaches a picture: the site keeps it in its MEDIA_ROOT (the
        # recipe's) and R-Chat gets a URL it can fetch without signing in.
        answer = _post_form(
            agent,
            room_url,
            {"type": "text", "text": ""},
            files={"file": ("สินค้า.png", PNG, "image/png")},
        )
        assert answer.status_code == 200, answer.text[-500:]
        received = eventually(
            lambda: sandbox.received("adopt-1"),
            lambda got: len(got) >= 4,
            timeout=60,
            what="the picture to reach the sandbox",
        )
        picture = received[-1]["message"]
        assert picture["type"] == "image" and picture["data"]["name"] == "สินค้า.png"
        fetched = requests.get(picture["data"]["url"], timeout=30)
        assert fetched.status_code == 200 and fetched.content == PNG
        assert fetched.headers["X-Content-Type-Options"] == "nosniff"
        assert list((site.root / "media" / "rchat" / "attachments").glob("*/*.png"))

        # A private note for the operator stays in the site: R-Chat gets nothing.
        answer = _post_form(
            agent, f"{room_url}notes/", {"body": "ลูกค้าถามราคา @olivia ช่วยดูสต็อกด้วยค่ะ"}
        )
        assert answer.status_code == 200
        mentions = operator.get(f"{base}/rchat/api/mentions/?unseen=1", timeout=30).json()
        assert [m["note"]["body"] for m in mentions["results"]] == [
            "ลูกค้าถามราคา @olivia ช่วยดูสต็อกด้วยค่ะ"
        ]
        assert len(sandbox.received("adopt-1")) == 4

        _every_page_answers_the_right_user(base, operator, agent, room["id"])
        assert all(process.poll() is None for process in processes), "a process exited"
    finally:
        for process in processes:
            stop(process)
    for process in processes:
        log = process.log.read_text("utf-8", "replace")
        assert "Traceback" not in log, f"{process.log.name}:\n{log[-4000:]}"
    print(f"adoption: Django {django_version}, Python {sys.version.split()[0]}")


def _every_page_answers_the_right_user(base, operator, agent, room_id):
    admin_index = operator.get(f"{base}/admin/rchat/", timeout=30).text
    models = sorted(set(re.findall(r'href="/admin/rchat/(\w+)/"', admin_index)))
    assert models == [
        "attachment",
        "broadcast",
        "chatroom",
        "credential",
        "message",
        "note",
        "webhookevent",
    ]
    operator_pages = ["/admin/", "/admin/rchat/", "/admin/rchat/chatroom/overview/"]
    for model in models:
        listing = f"/admin/rchat/{model}/"
        operator_pages.append(listing)
        first = re.search(
            rf'href="(/admin/rchat/{model}/\d+/change/)', operator.get(base + listing).text
        )
        assert first, f"no {model} to open"
        operator_pages.append(first.group(1))
    operator_pages.append("/admin/rchat/credential/add/")
    inbox_pages = [
        "/rchat/inbox/",
        "/rchat/inbox/?view=unassigned&status=all",
        "/rchat/inbox/rooms/",
        f"/rchat/inbox/{room_id}/",
        f"/rchat/inbox/{room_id}/thread/",
        "/rchat/api/rooms/",
        f"/rchat/api/rooms/{room_id}/",
        f"/rchat/api/rooms/{room_id}/messages/",
        "/rchat/api/schema/",
        "/rchat/api/docs/",
        "/static/rchat/inbox.css",
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css",
    ]
    answers = {
        ("operator", page): operator.get(base + page, timeout=30).status_code
        for page in operator_pages + inbox_pages
    }
    answers |= {
        ("agent", page): agent.get(base + page, timeout=30).status_code for page in inbox_pages
    }
    assert {key: status for key, status in answers.items() if status != 200} == {}
    # Admin is for staff: the agent is sent to admin's login, and sees no rchat page there.
    refused = agent.get(f"{base}/admin/rchat/chatroom/", timeout=30, allow_redirects=False)
    assert refused.status_code == 302 and "/admin/login/" in refused.headers["Location"]


@pytest.mark.rabbitmq
def test_the_same_site_delivers_through_rabbitmq_with_the_rabbitmq_extra(site):
    """The broker is a setting: a worker on RabbitMQ delivers what the site queues there."""
    installed = subprocess.run(  # noqa: S603 - pip, in the test site's virtualenv
        [site.python, "-m", "pip", "install", "--quiet", f"{site.wheel}[rabbitmq]"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    on_rabbitmq = {"CELERY_BROKER_URL": amqp_url()}
    processes = []
    try:
        sandbox_process, sandbox = site.start_sandbox()
        processes.append(sandbox_process)
        site.register(sandbox)
        processes.append(
            site.start(
                "worker-rabbitmq",
                [str(site.venv / "bin" / "celery"), *WORKER],
                ready=lambda text: " ready." in text,
                env=on_rabbitmq,
            )
        )
        assert "amqp://" in processes[-1].log.read_text("utf-8")

        sent = site.manage(
            *("rchat_send", "--chat-id", "adopt-amqp", "--credential", "shop"),
            *("--data", "ส่งผ่าน RabbitMQ", "--wait", "--timeout", "60"),
            env=on_rabbitmq,
        )

        assert "sent" in sent.stdout.lower(), sent.stdout
        assert [r["message"] for r in sandbox.received("adopt-amqp")] == [
            {"type": "text", "data": "ส่งผ่าน RabbitMQ"}
        ]
    finally:
        for process in processes:
            stop(process)
