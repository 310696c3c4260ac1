//! The SQL of docs/questdb.md, as an operator would paste it: the `CREATE TABLE` blocks,
//! and the queries of its "Queries" section split into single statements (`/exec` takes
//! one statement per request).

/// docs/questdb.md.
pub fn text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/questdb.md"))
        .expect("docs/questdb.md")
}

/// One statement of the docs.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The SQL, as written (with its `;`).
    pub sql: String,
    /// The prose before its block says it must return no rows (an invariant check).
    pub expect_empty: bool,
}

/// Every ```sql block with the prose before it.
fn blocks(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(i) = rest.find("```sql") {
        let prose = rest[..i].to_string();
        let body = &rest[i + "```sql".len()..];
        let end = body.find("```").expect("unterminated ```sql block");
        out.push((prose, body[..end].to_string()));
        rest = &body[end + 3..];
    }
    out
}

/// Splits a block at the `;` that ends a line.
fn statements(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in block.lines() {
        if line.trim().is_empty() && cur.trim().is_empty() {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if line.trim_end().ends_with(';') {
            out.push(cur.trim().to_string());
            cur.clear();
        }
    }
    assert!(cur.trim().is_empty(), "a statement without its ';': {cur}");
    out
}

/// The `CREATE TABLE` statements.
pub fn ddl(doc: &str) -> Vec<String> {
    blocks(doc)
        .into_iter()
        .flat_map(|(_, b)| statements(&b))
        .filter(|s| s.starts_with("CREATE TABLE"))
        .collect()
}

/// The statements of the "Queries" section.
pub fn queries(doc: &str) -> Vec<Statement> {
    let start = doc.find("\n## Queries").expect("a Queries section in docs/questdb.md");
    let section = &doc[start..];
    let section = match section[1..].find("\n## ") {
        Some(end) => &section[..end + 1],
        None => section,
    };
    blocks(section)
        .into_iter()
        .flat_map(|(prose, b)| {
            let empty = prose.contains("must return no rows");
            statements(&b).into_iter().map(move |sql| Statement { sql, expect_empty: empty })
        })
        .collect()
}
