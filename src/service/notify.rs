//! Tells systemd how the daemon is doing (sd_notify): ready, reloading,
//! stopping, a one-line status and watchdog pings. In: calls from the daemon;
//! out: datagrams to `$NOTIFY_SOCKET`. Without that variable every call is a
//! no-op, and a failed send is logged at debug and ignored: being supervised
//! must never stop the daemon from working.

use std::ffi::OsStr;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

use sd_notify::NotifyState;

/// Where notifications go, if anywhere. Cheap to share by reference; every
/// method takes `&self`.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    watchdog_interval: Option<Duration>,
}

#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC`/`WATCHDOG_PID`, leaving them
    /// set. Outside systemd this is a no-op notifier.
    pub fn from_env() -> Notifier {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier::disabled();
        };
        let mut notifier = Notifier::to_socket(&path);
        if notifier.target.is_some() {
            notifier.watchdog_interval = sd_notify::watchdog_enabled().map(|usec| usec / 2);
        }
        notifier
    }

    /// Sends to the socket at `path`; a leading `@` names a Linux abstract
    /// socket, as systemd writes it. A path that cannot be used gives a
    /// no-op notifier. No watchdog interval is set.
    pub fn to_socket(path: impl AsRef<OsStr>) -> Notifier {
        let path = path.as_ref();
        match Target::new(path) {
            Ok(target) => Notifier {
                target: Some(target),
                watchdog_interval: None,
            },
            Err(error) => {
                tracing::debug!(socket = ?path, %error, "sd_notify socket unusable; not notifying");
                Notifier::disabled()
            }
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            watchdog_interval: None,
        }
    }

    /// Whether anything is sent at all.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Start-up is complete: `READY=1`.
    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    /// A reload begins: `RELOADING=1` with `MONOTONIC_USEC`, which systemd
    /// ≥ 253 requires for `Type=notify-reload` and accepts otherwise. Send
    /// `ready()` when the reload is done (applied or rejected).
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(error) => {
                tracing::debug!(%error, "cannot read CLOCK_MONOTONIC for sd_notify");
                self.send(&[NotifyState::Reloading]);
            }
        }
    }

    /// Shutdown begins: `STOPPING=1`.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// A free-form status for `systemctl status`, see [`status_line`].
    pub fn status(&self, line: &str) {
        // One notification is one line per assignment: a newline would start
        // a bogus assignment.
        let line = line.replace('\n', " ");
        self.send(&[NotifyState::Status(&line)]);
    }

    /// The main loop is alive: `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// How often to call [`Notifier::watchdog`]: half of `WATCHDOG_USEC`
    /// when systemd set a watchdog for this process, else `None`.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_interval
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        let Some(target) = &self.target else {
            return;
        };
        let mut message = String::new();
        for state in states {
            message.push_str(&state.to_string());
            message.push('\n');
        }
        if let Err(error) = target.socket.send_to_addr(message.as_bytes(), &target.addr) {
            tracing::debug!(%error, message = message.trim_end(), "sd_notify send failed");
        }
    }
}

impl Target {
    fn new(path: &OsStr) -> io::Result<Target> {
        let addr = socket_addr(path)?;
        Ok(Target {
            socket: UnixDatagram::unbound()?,
            addr,
        })
    }
}

fn socket_addr(path: &OsStr) -> io::Result<SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    match bytes.split_first() {
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty socket path",
        )),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Some((b'@', name)) => {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        Some(_) => SocketAddr::from_pathname(Path::new(path)),
    }
}

/// The status line the daemon shows in `systemctl status`.
pub fn status_line(watching: usize, terminal: usize, throttled: usize) -> String {
    format!("watching {watching}, terminal {terminal}, throttled {throttled}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> (tempfile::TempDir, UnixDatagram, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind a datagram socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set a read timeout");
        (dir, socket, path)
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a notification arrives");
        String::from_utf8(buf[..n].to_vec()).expect("notifications are text")
    }

    #[test]
    fn notifications_arrive_in_order_with_systemd_wording() {
        let (_dir, socket, path) = listener();
        let notifier = Notifier::to_socket(&path);
        assert!(notifier.is_enabled());

        notifier.ready();
        notifier.status(&status_line(3, 1, 0));
        notifier.reloading();
        notifier.watchdog();
        notifier.stopping();

        assert_eq!(receive(&socket), "READY=1\n");
        assert_eq!(
            receive(&socket),
            "STATUS=watching 3, terminal 1, throttled 0\n"
        );
        let reloading = receive(&socket);
        let mut lines = reloading.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"), "{reloading:?}");
        let usec = lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
        assert!(usec.parse::<u64>().is_ok_and(|n| n > 0), "{reloading:?}");
        assert_eq!(lines.next(), None, "{reloading:?}");
        assert_eq!(receive(&socket), "WATCHDOG=1\n");
        assert_eq!(receive(&socket), "STOPPING=1\n");
    }

    #[test]
    fn a_newline_in_a_status_cannot_inject_another_assignment() {
        let (_dir, socket, path) = listener();
        Notifier::to_socket(&path).status("watching 1\nREADY=1");
        assert_eq!(receive(&socket), "STATUS=watching 1 READY=1\n");
    }

    #[test]
    fn a_missing_socket_is_ignored() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let notifier = Notifier::to_socket(dir.path().join("nobody-listens.sock"));
        notifier.ready();
        notifier.watchdog();
        assert_eq!(notifier.watchdog_interval(), None);
    }

    #[test]
    fn a_disabled_notifier_sends_nothing_and_has_no_watchdog() {
        let notifier = Notifier::disabled();
        assert!(!notifier.is_enabled());
        notifier.ready();
        assert_eq!(notifier.watchdog_interval(), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_at_sign_names_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!(
            "flowwatch-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("an abstract name");
        let socket = UnixDatagram::bind_addr(&addr).expect("bind an abstract socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set a read timeout");
        Notifier::to_socket(format!("@{name}")).ready();
        assert_eq!(receive(&socket), "READY=1\n");
    }
}
