//! A syntax check of Calico selector expressions (`app == 'web' && has(tier)`), so a
//! template with a malformed selector is refused when the FederatedPolicy is applied
//! rather than by every cluster. No crate parses Calico's selector language; this follows
//! the grammar of libcalico-go's `selector/parser`:
//!
//! ```text
//! expr    = and { "||" and }
//! and     = unary { "&&" unary }
//! unary   = "!" unary | "(" expr ")" | "all()" | "global()" | "has(" label ")"
//!         | label ( ("==" | "!=" | "contains" | "starts with" | "ends with") string
//!                 | ["not"] "in" "{" [string {"," string}] "}" )
//! label   = [A-Za-z0-9_./-]+      string = '…' | "…"
//! ```
//!
//! It only checks; matching Calico selectors is not implemented anywhere in Cattery.

/// Checks `s`; the error names what was expected and the character offset.
pub(super) fn check(s: &str) -> Result<(), String> {
    let mut p = P {
        s: s.as_bytes(),
        i: 0,
    };
    p.expr(0)?;
    p.ws();
    if p.i < p.s.len() {
        return Err(p.err("'&&', '||' or the end"));
    }
    Ok(())
}

/// Deepest nesting of parentheses and `!` accepted (bounds recursion on hostile input).
const MAX_DEPTH: usize = 64;

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

impl P<'_> {
    fn err(&self, want: &str) -> String {
        let rest = String::from_utf8_lossy(&self.s[self.i.min(self.s.len())..]);
        let found = if rest.is_empty() {
            "the end".to_string()
        } else {
            format!("{:?}", rest.chars().take(12).collect::<String>())
        };
        format!(
            "invalid Calico selector: expected {want} at offset {}, found {found}",
            self.i
        )
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    /// Consumes `tok` (after whitespace) if it is next.
    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        let t = tok.as_bytes();
        let fits = self.s[self.i..].starts_with(t);
        // A keyword must not run on into a label (`internal` is not `in`).
        let word_ends = !t.last().is_some_and(|b| b.is_ascii_alphabetic())
            || self
                .s
                .get(self.i + t.len())
                .is_none_or(|b| !is_label_byte(*b));
        if fits && word_ends {
            self.i += t.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, tok: &str) -> Result<(), String> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.err(&format!("'{tok}'")))
        }
    }

    fn expr(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "invalid Calico selector: nested deeper than {MAX_DEPTH}"
            ));
        }
        self.and(depth)?;
        while self.eat("||") {
            self.and(depth)?;
        }
        Ok(())
    }

    fn and(&mut self, depth: usize) -> Result<(), String> {
        self.unary(depth)?;
        while self.eat("&&") {
            self.unary(depth)?;
        }
        Ok(())
    }

    fn unary(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "invalid Calico selector: nested deeper than {MAX_DEPTH}"
            ));
        }
        if self.eat("!") {
            return self.unary(depth + 1);
        }
        if self.eat("(") {
            self.expr(depth + 1)?;
            return self.expect(")");
        }
        for f in ["all", "global"] {
            let save = self.i;
            if self.eat(f) {
                if self.eat("(") {
                    return self.expect(")");
                }
                self.i = save;
            }
        }
        let save = self.i;
        if self.eat("has") {
            if self.eat("(") {
                self.label()?;
                return self.expect(")");
            }
            self.i = save;
        }
        self.label()?;
        if self.eat("==") || self.eat("!=") || self.eat("contains") {
            return self.string();
        }
        if self.eat("starts") || self.eat("ends") {
            self.expect("with")?;
            return self.string();
        }
        let negated = self.eat("not");
        if self.eat("in") {
            return self.set();
        }
        Err(self.err(if negated {
            "'in'"
        } else {
            "'==', '!=', 'in', 'not in', 'contains', 'starts with' or 'ends with'"
        }))
    }

    fn label(&mut self) -> Result<(), String> {
        self.ws();
        let start = self.i;
        while self.i < self.s.len() && is_label_byte(self.s[self.i]) {
            self.i += 1;
        }
        if self.i == start {
            return Err(self.err("a label name"));
        }
        Ok(())
    }

    fn string(&mut self) -> Result<(), String> {
        self.ws();
        let Some(&q @ (b'\'' | b'"')) = self.s.get(self.i) else {
            return Err(self.err("a quoted string"));
        };
        let start = self.i;
        self.i += 1;
        while self.i < self.s.len() && self.s[self.i] != q {
            self.i += 1;
        }
        if self.i == self.s.len() {
            self.i = start;
            return Err(self.err("a closing quote"));
        }
        self.i += 1;
        Ok(())
    }

    fn set(&mut self) -> Result<(), String> {
        self.expect("{")?;
        if self.eat("}") {
            return Ok(());
        }
        loop {
            self.string()?;
            if self.eat("}") {
                return Ok(());
            }
            self.expect(",")?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn calico_selectors() {
        for ok in [
            "all()",
            "global()",
            "app == 'web'",
            "app == \"web\" && tier != 'db'",
            "has(projectcalico.org/name) && !has(x)",
            "!(a == 'b' || c in {'d', 'e'})",
            "role not in {}",
            "name starts with 'api' || name ends with \"-db\" || k contains 'x'",
            "cattery.dev/remote-peer == '0123abcd'",
            " ( ( a == 'b' ) ) ",
            "internal == 'x'",
        ] {
            check(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for (bad, want) in [
            ("app=web", "'=='"),
            ("app == web", "quoted string"),
            ("app == 'web", "closing quote"),
            ("(a == 'b'", "')'"),
            ("a == 'b' &&", "label name"),
            ("a == 'b' and c == 'd'", "'&&', '||' or the end"),
            ("a in ('x')", "'{'"),
            ("a not == 'x'", "'in'"),
            ("has(", "label name"),
            ("a in {'x',}", "quoted string"),
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
        assert!(check(&"!".repeat(10_000)).unwrap_err().contains("deeper"));
        assert!(check(&format!("{}a == 'b'{}", "(".repeat(100), ")".repeat(100))).is_err());
    }
}
