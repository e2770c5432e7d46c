//! A recorded fake of the Kubernetes API for the `[ha] backend =
//! "kubernetes"` tests (no kube-apiserver can be installed here): one
//! namespace, its Leases and ConfigMaps, GET / POST / PUT with
//! resourceVersion semantics (a PUT on a stale version is 409 Conflict, a
//! POST of an existing name 409 AlreadyExists), and `watch=true` on the
//! Lease collection as a stream of JSON lines. Every request is recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::watch;

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Option<Value>,
    /// The status the fake answered.
    pub status: u16,
}

#[derive(Default)]
struct Objects {
    next_version: u64,
    /// By (collection path, name), e.g. ("/api/v1/namespaces/ns/configmaps", "x").
    stored: BTreeMap<(String, String), Value>,
    log: Vec<Recorded>,
}

struct Shared {
    objects: Mutex<Objects>,
    /// While set, every request is answered 503 (an API server that is
    /// down or unreachable).
    down: std::sync::atomic::AtomicBool,
    /// Bumped on every change, for watches.
    changed: watch::Sender<u64>,
}

pub struct FakeKube {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    /// Holds the kubeconfig written for the binary.
    dir: tempfile::TempDir,
}

pub const NAMESPACE: &str = "flowwatch-test";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/flowwatch-test/leases";
const CONFIGMAPS: &str = "/api/v1/namespaces/flowwatch-test/configmaps";

impl FakeKube {
    pub async fn spawn() -> FakeKube {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the fake API");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            objects: Mutex::new(Objects::default()),
            down: std::sync::atomic::AtomicBool::new(false),
            changed: watch::channel(0).0,
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig(addr)).unwrap();
        FakeKube {
            addr,
            shared,
            task,
            dir,
        }
    }

    /// A kubeconfig aimed at the fake, no auth, context namespace
    /// `flowwatch-test` (for `KUBECONFIG`).
    pub fn kubeconfig(&self) -> std::path::PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.objects.lock().unwrap().log.clone()
    }

    pub fn lease(&self, name: &str) -> Option<Value> {
        self.get(LEASES, name)
    }

    pub fn config_map(&self, name: &str) -> Option<Value> {
        self.get(CONFIGMAPS, name)
    }

    fn get(&self, collection: &str, name: &str) -> Option<Value> {
        let objects = self.shared.objects.lock().unwrap();
        objects
            .stored
            .get(&(collection.to_string(), name.to_string()))
            .cloned()
    }

    /// From now on every request is answered 503 (`true`), or served again.
    pub fn set_down(&self, down: bool) {
        self.shared
            .down
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Another party takes the Lease (as `kubectl edit` or a rogue client
    /// would): the holder and acquireTime change, with a new version.
    pub fn take_lease(&self, name: &str, holder: &str) {
        let mut objects = self.shared.objects.lock().unwrap();
        objects.next_version += 1;
        let version = objects.next_version.to_string();
        let key = (LEASES.to_string(), name.to_string());
        let lease = objects.stored.get_mut(&key).expect("the lease exists");
        lease["spec"]["holderIdentity"] = json!(holder);
        lease["spec"]["acquireTime"] = json!("2030-01-01T00:00:00.000000Z");
        lease["metadata"]["resourceVersion"] = json!(version);
        drop(objects);
        self.shared.changed.send_modify(|n| *n += 1);
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn kubeconfig(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {NAMESPACE}\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
    )
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let watching = method == Method::GET && path == LEASES && query.contains("watch=true");
    let down = shared.down.load(std::sync::atomic::Ordering::SeqCst);
    let (code, answer) = if down {
        status(503, "ServiceUnavailable", "the fake is down")
    } else if watching {
        (200, Value::Null)
    } else {
        answer(&shared, &method, &path, body.as_ref())
    };
    shared.objects.lock().unwrap().log.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        body,
        status: code,
    });
    if watching && !down {
        return watch_stream(shared, &query);
    }
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(answer.to_string()))
        .unwrap()
}

/// GET, POST and PUT on one collection's objects, with resourceVersion checks.
fn answer(shared: &Shared, method: &Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let (collection, name) = match path.rsplit_once('/') {
        Some((collection, name)) if collection == LEASES || collection == CONFIGMAPS => {
            (collection.to_string(), Some(name.to_string()))
        }
        _ if path == LEASES || path == CONFIGMAPS => (path.to_string(), None),
        _ => return status(404, "NotFound", "no such path in the fake"),
    };
    let mut objects = shared.objects.lock().unwrap();
    let result = match (method.as_str(), name) {
        ("GET", Some(name)) => match objects.stored.get(&(collection, name.clone())) {
            Some(object) => (200, object.clone()),
            None => status(404, "NotFound", &format!("{name} not found")),
        },
        ("POST", None) => {
            let Some(mut object) = body.cloned() else {
                return status(400, "BadRequest", "no body");
            };
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if objects
                .stored
                .contains_key(&(collection.clone(), name.clone()))
            {
                return status(409, "AlreadyExists", &format!("{name} already exists"));
            }
            objects.next_version += 1;
            object["metadata"]["resourceVersion"] = json!(objects.next_version.to_string());
            objects.stored.insert((collection, name), object.clone());
            (201, object)
        }
        ("PUT", Some(name)) => {
            let Some(mut object) = body.cloned() else {
                return status(400, "BadRequest", "no body");
            };
            let key = (collection, name.clone());
            let Some(current) = objects.stored.get(&key) else {
                return status(404, "NotFound", &format!("{name} not found"));
            };
            let sent = object["metadata"]["resourceVersion"].clone();
            if sent != current["metadata"]["resourceVersion"] {
                return status(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {name}: the object has been modified"
                    ),
                );
            }
            objects.next_version += 1;
            object["metadata"]["resourceVersion"] = json!(objects.next_version.to_string());
            objects.stored.insert(key, object.clone());
            (200, object)
        }
        _ => status(405, "MethodNotAllowed", "not in the fake"),
    };
    drop(objects);
    if result.0 < 300 && *method != Method::GET {
        shared.changed.send_modify(|n| *n += 1);
    }
    result
}

/// Lease events newer than `resourceVersion` as JSON lines, until
/// `timeoutSeconds`.
fn watch_stream(shared: Arc<Shared>, query: &str) -> Response {
    let param = |key: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
            .unwrap_or("")
            .to_string()
    };
    let from: u64 = param("resourceVersion").parse().unwrap_or(0);
    let name = param("fieldSelector").replace("metadata.name%3D", "");
    let timeout = Duration::from_secs(param("timeoutSeconds").parse().unwrap_or(5));
    let deadline = tokio::time::Instant::now() + timeout;
    let changes = shared.changed.subscribe();
    let state = (shared, changes, from);
    let stream = futures_util::stream::unfold(state, move |(shared, mut changes, seen)| {
        let name = name.clone();
        async move {
            loop {
                let lease = {
                    let objects = shared.objects.lock().unwrap();
                    objects
                        .stored
                        .get(&(LEASES.to_string(), name.clone()))
                        .cloned()
                };
                let version: u64 = lease
                    .as_ref()
                    .and_then(|l| l["metadata"]["resourceVersion"].as_str()?.parse().ok())
                    .unwrap_or(0);
                if let Some(lease) = lease
                    && version > seen
                {
                    let line = format!("{}\n", json!({"type": "MODIFIED", "object": lease}));
                    return Some((
                        Ok::<_, std::convert::Infallible>(Bytes::from(line)),
                        (shared, changes, version),
                    ));
                }
                match tokio::time::timeout_at(deadline, changes.changed()).await {
                    Ok(Ok(())) => {}
                    _ => return None,
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}
