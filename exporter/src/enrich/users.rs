//! uid → user name, from /etc/passwd, cached. Re-read at most every few
//! seconds when an unknown uid shows up (users get added at run time).

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

const REREAD_AFTER: Duration = Duration::from_secs(5);

/// Looked up for every record: foldhash, not std's SipHash (which showed in
/// the agent's profile); seeded per process like the DNS matcher's map.
type Names = HashMap<u32, String, foldhash::fast::RandomState>;

pub struct Users {
    path: PathBuf,
    names: Names,
    read_at: Option<Instant>,
    /// How many times `names` was replaced (see `Context::generation`).
    generation: u64,
}

impl Default for Users {
    fn default() -> Self {
        Self::from_file("/etc/passwd")
    }
}

impl Users {
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            names: Names::default(),
            read_at: None,
            generation: 0,
        }
    }

    fn reload(&mut self) {
        self.read_at = Some(Instant::now());
        if let Ok(text) = std::fs::read_to_string(&self.path) {
            self.names = parse_passwd(&text);
            self.generation += 1;
        }
    }

    pub fn name(&mut self, uid: u32) -> Option<&str> {
        self.name_and_generation(uid).0
    }

    /// The name, and how many times the names were re-read: a name's
    /// pointer names the same text only while that count stays.
    pub fn name_and_generation(&mut self, uid: u32) -> (Option<&str>, u64) {
        // The clock is read only for unknown uids.
        if !self.names.contains_key(&uid) && self.read_at.is_none_or(|t| t.elapsed() > REREAD_AFTER)
        {
            self.reload();
        }
        (self.names.get(&uid).map(String::as_str), self.generation)
    }
}

fn parse_passwd(text: &str) -> Names {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_passwd_lines() {
        let m = super::parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\nbad line\nnobody:x:65534:65534::/:/sbin/nologin\n",
        );
        assert_eq!(m.get(&0).map(String::as_str), Some("root"));
        assert_eq!(m.get(&65534).map(String::as_str), Some("nobody"));
        assert_eq!(m.len(), 2);
    }
}
