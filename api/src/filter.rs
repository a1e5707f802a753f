//! The runs table's filter language, parsed on the server:
//!
//! ```text
//! accuracy > 0.97 and lr < 0.01 and status = succeeded and optimizer != sgd
//! ```
//!
//! Clauses are `name op value` joined by `and`; `op` is one of `<`, `<=`, `>`, `>=`, `=`,
//! `!=`. `status`, `kind`, `name`, `queue` and `worker` are the run's own fields. A known
//! parameter name (or `params.<name>`, with dots into nested params such as
//! `params.fine_tune.epochs`) compares the run's params; any other name (or `metrics.<key>`)
//! compares the last value of that metric, and a run without that metric does not match.
use cairn_domain::{RunKind, RunStatus};

/// The parameters of every run kind, matched without a `params.` prefix.
const PARAM_NAMES: &[&str] = &[
    "dataset",
    "train_range",
    "validation_range",
    "range",
    "epochs",
    "batch_size",
    "learning_rate",
    "optimizer",
    "seed",
    "device",
    "sparsity",
    "method",
    "layers",
    "fine_tune",
    "members",
    "upload_id",
];

/// Short names people type for common parameters.
const ALIASES: &[(&str, &str)] = &[("lr", "learning_rate"), ("batch", "batch_size"), ("bs", "batch_size")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Status,
    Kind,
    Name,
    Queue,
    Worker,
}

impl Field {
    fn of(name: &str) -> Option<Self> {
        Some(match name {
            "status" => Self::Status,
            "kind" => Self::Kind,
            "name" => Self::Name,
            "queue" => Self::Queue,
            "worker" => Self::Worker,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Field(Field),
    /// A path into the params (`["fine_tune", "epochs"]`).
    Param(Vec<String>),
    Metric(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
    NotEqual,
}

impl Op {
    /// The SQL operator: one of a fixed set, never text from the request.
    pub fn sql(self) -> &'static str {
        match self {
            Self::Less => "<",
            Self::LessOrEqual => "<=",
            Self::Greater => ">",
            Self::GreaterOrEqual => ">=",
            Self::Equal => "=",
            Self::NotEqual => "<>",
        }
    }

    fn is_ordering(self) -> bool {
        !matches!(self, Self::Equal | Self::NotEqual)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub target: Target,
    pub op: Op,
    pub value: Value,
}

/// The clause `field = text`, for a form's select (the history page's status and kind), with
/// the checks of the filter language.
pub fn field_clause(field: Field, text: &str) -> Result<Clause, String> {
    field_value(field, text)?;
    Ok(Clause { target: Target::Field(field), op: Op::Equal, value: Value::Text(text.to_owned()) })
}

/// Whether `text` is a value `field` can hold: statuses and kinds by their names.
fn field_value(field: Field, text: &str) -> Result<(), String> {
    match field {
        Field::Status if text.parse::<RunStatus>().is_err() => {
            Err(format!("`{text}` is not a status ({})", RunStatus::ALL.map(RunStatus::as_str).join(", ")))
        }
        Field::Kind if text.parse::<RunKind>().is_err() => {
            Err(format!("`{text}` is not a run kind ({})", RunKind::ALL.map(RunKind::as_str).join(", ")))
        }
        _ => Ok(()),
    }
}

/// What was wrong with a filter, and where (a character position, from 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at character {at}: {message}")]
pub struct FilterError {
    pub at: usize,
    pub message: String,
}

/// The clauses of `text`, all of which a run must satisfy. Empty text filters nothing.
pub fn parse(text: &str) -> Result<Vec<Clause>, FilterError> {
    let tokens = tokenize(text)?;
    let mut clauses = Vec::new();
    let mut rest = tokens.as_slice();
    while !rest.is_empty() {
        if !clauses.is_empty() {
            match rest {
                [(Token::Word(word), _), tail @ ..] if word.eq_ignore_ascii_case("and") => rest = tail,
                [(_, at), ..] => return Err(error(*at, "expected `and` before the next condition")),
                [] => unreachable!("rest is not empty"),
            }
        }
        let (clause, tail) = parse_clause(rest, text)?;
        clauses.push(clause);
        rest = tail;
    }
    Ok(clauses)
}

/// Tokens with the character position each starts at.
type Tokens = [(Token, usize)];

fn parse_clause<'t>(tokens: &'t Tokens, text: &str) -> Result<(Clause, &'t Tokens), FilterError> {
    let end = text.chars().count() + 1;
    let (name, name_at) = match tokens.first() {
        Some((Token::Word(name), at)) => (name.as_str(), *at),
        Some((_, at)) => return Err(error(*at, "expected a name (a run field, parameter or metric)")),
        None => return Err(error(end, "expected a condition after `and`")),
    };
    let op = match tokens.get(1) {
        Some((Token::Op(op), _)) => *op,
        Some((_, at)) => return Err(error(*at, format!("expected an operator (<, <=, >, >=, =, !=) after `{name}`"))),
        None => return Err(error(end, format!("expected an operator (<, <=, >, >=, =, !=) after `{name}`"))),
    };
    let (value, value_at) = match tokens.get(2) {
        Some((Token::Word(word), at)) => (
            word.parse::<f64>().ok().filter(|v| v.is_finite()).map_or_else(|| Value::Text(word.clone()), Value::Number),
            *at,
        ),
        Some((Token::Quoted(text), at)) => (Value::Text(text.clone()), *at),
        Some((Token::Op(_), at)) => return Err(error(*at, format!("expected a value after `{name}`"))),
        None => return Err(error(end, format!("expected a value after `{name}`"))),
    };
    let target = resolve(name, name_at)?;
    check(&target, op, &value, name, name_at, value_at)?;
    Ok((Clause { target, op, value }, &tokens[3..]))
}

fn resolve(name: &str, at: usize) -> Result<Target, FilterError> {
    let path = |rest: &str| -> Result<Vec<String>, FilterError> {
        let parts: Vec<String> = rest.split('.').map(str::to_owned).collect();
        if parts.iter().any(String::is_empty) {
            return Err(error(at, format!("`{name}` has an empty part")));
        }
        Ok(parts)
    };
    if let Some(field) = Field::of(name) {
        return Ok(Target::Field(field));
    }
    if let Some(rest) = name.strip_prefix("params.").or_else(|| name.strip_prefix("param.")) {
        return Ok(Target::Param(path(rest)?));
    }
    if let Some(key) = name.strip_prefix("metrics.").or_else(|| name.strip_prefix("metric.")) {
        return if key.is_empty() {
            Err(error(at, "`metrics.` needs a metric key"))
        } else {
            Ok(Target::Metric(key.to_owned()))
        };
    }
    let name = ALIASES.iter().find(|(alias, _)| *alias == name).map_or(name, |(_, full)| full);
    if PARAM_NAMES.contains(&name) {
        return Ok(Target::Param(vec![name.to_owned()]));
    }
    Ok(Target::Metric(name.to_owned()))
}

fn check(
    target: &Target,
    op: Op,
    value: &Value,
    name: &str,
    name_at: usize,
    value_at: usize,
) -> Result<(), FilterError> {
    match (target, value) {
        (Target::Field(_), Value::Number(_)) | (Target::Field(_), Value::Text(_)) if op.is_ordering() => {
            Err(error(name_at, format!("`{name}` is text: compare it with = or !=")))
        }
        (Target::Field(field), Value::Text(text)) => {
            field_value(*field, text).map_err(|message| error(value_at, message))
        }
        (Target::Metric(key), Value::Text(text)) => {
            Err(error(value_at, format!("the metric `{key}` is a number; `{text}` is not")))
        }
        (Target::Param(_), Value::Text(_)) if op.is_ordering() => {
            Err(error(value_at, format!("`{name}` {} needs a number", op.sql())))
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Op(Op),
}

fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if matches!(c, '<' | '>' | '=' | '!') {
            let two = chars.get(i + 1) == Some(&'=');
            let op = match (c, two) {
                ('<', true) => Op::LessOrEqual,
                ('<', false) => Op::Less,
                ('>', true) => Op::GreaterOrEqual,
                ('>', false) => Op::Greater,
                ('=', _) => Op::Equal,
                ('!', true) => Op::NotEqual,
                ('!', false) => return Err(error(at, "`!` must be followed by `=`")),
                _ => unreachable!("matched above"),
            };
            i += if two { 2 } else { 1 };
            tokens.push((Token::Op(op), at));
        } else if c == '\'' || c == '"' {
            let close = chars[i + 1..].iter().position(|&d| d == c).ok_or_else(|| error(at, "unclosed quote"))?;
            tokens.push((Token::Quoted(chars[i + 1..i + 1 + close].iter().collect()), at));
            i += close + 2;
        } else if c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | '+') {
            let len = chars[i..]
                .iter()
                .position(|&d| !(d.is_alphanumeric() || matches!(d, '_' | '.' | '-' | '/' | '+')))
                .unwrap_or(chars.len() - i);
            tokens.push((Token::Word(chars[i..i + len].iter().collect()), at));
            i += len;
        } else {
            return Err(error(at, format!("unexpected `{c}`")));
        }
    }
    Ok(tokens)
}

fn error(at: usize, message: impl Into<String>) -> FilterError {
    FilterError { at, message: message.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(key: &str, op: Op, value: f64) -> Clause {
        Clause { target: Target::Metric(key.into()), op, value: Value::Number(value) }
    }

    #[test]
    fn parses_metrics_params_fields_aliases_and_quotes() {
        let clauses = parse("accuracy > 0.97 and lr < 0.01").expect("valid");
        assert_eq!(
            clauses,
            [
                metric("accuracy", Op::Greater, 0.97),
                Clause {
                    target: Target::Param(vec!["learning_rate".into()]),
                    op: Op::Less,
                    value: Value::Number(0.01)
                },
            ]
        );
        let clauses =
            parse("status = succeeded AND optimizer != 'sgd' and params.fine_tune.epochs >= 1 and metrics.latency_ms/batch_1/median<=0.2 and val_loss<1e-1")
                .expect("valid");
        assert_eq!(
            clauses[0],
            Clause { target: Target::Field(Field::Status), op: Op::Equal, value: Value::Text("succeeded".into()) }
        );
        assert_eq!(clauses[1].target, Target::Param(vec!["optimizer".into()]));
        assert_eq!(clauses[1].value, Value::Text("sgd".into()));
        assert_eq!(clauses[2].target, Target::Param(vec!["fine_tune".into(), "epochs".into()]));
        assert_eq!(clauses[3], metric("latency_ms/batch_1/median", Op::LessOrEqual, 0.2));
        assert_eq!(clauses[4], metric("val_loss", Op::Less, 0.1));
        assert_eq!(parse("  ").expect("empty"), []);
        assert_eq!(parse("name = \"<b>my run</b>\"").expect("quoted")[0].value, Value::Text("<b>my run</b>".into()));
    }

    #[test]
    fn bad_filters_say_what_and_where() {
        let cases = [
            ("accuracy 0.97", 10, "expected an operator"),
            ("accuracy >", 11, "expected a value after `accuracy`"),
            ("accuracy > 0.9 lr < 1", 16, "expected `and`"),
            ("accuracy > 0.9 and", 19, "expected a condition after `and`"),
            ("accuracy > high", 12, "is a number"),
            ("status = done", 10, "not a status"),
            ("kind = sweep", 8, "not a run kind"),
            ("status > running", 1, "compare it with = or !="),
            ("optimizer < adam", 13, "needs a number"),
            ("accuracy ! 1", 10, "`!` must be followed by `=`"),
            ("name = 'open", 8, "unclosed quote"),
            ("accuracy > 0.9 ; drop table runs", 16, "unexpected `;`"),
            ("> 1", 1, "expected a name"),
            ("params..x = 1", 1, "empty part"),
        ];
        for (text, at, message) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!(err.at, at, "{text}: {err}");
            assert!(err.message.contains(message), "{text}: {err}");
        }
    }
}
