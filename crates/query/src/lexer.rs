//! Splits a query into tokens, each with the character offset it starts at.

use serde_json::Number;

use crate::QueryError;

/// One token of a query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A name: a keyword, a function, a property (`$` and `_` allowed, as in `$version`).
    Ident(String),
    /// A single-quoted string, unescaped.
    Str(String),
    Num(Number),
    /// Punctuation and operators: `( ) [ ] , . * + - / % = != <> < <= > >=`.
    Sym(&'static str),
    Eof,
}

/// A token and the character offset it starts at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

const SYMBOLS: &[&str] = &[
    "!=", "<>", "<=", ">=", "(", ")", "[", "]", ",", ".", "*", "+", "-", "/", "%", "=", "<", ">",
];

fn ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

/// The tokens of `text`, ending with [`Tok::Eof`].
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, QueryError> {
    tokenize_with(text, false)
}

/// The tokens of `text`; with `dashed`, a name starting with `$` may hold dashes between
/// letters (`$iothub-enqueuedtime`, `$dt-dataschema`), as routing queries name system
/// properties.
pub(crate) fn tokenize_with(text: &str, dashed: bool) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if ident_start(c) {
            while i < chars.len()
                && (ident_char(chars[i])
                    || (dashed
                        && c == '$'
                        && chars[i] == '-'
                        && chars.get(i + 1).is_some_and(char::is_ascii_alphabetic)))
            {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(chars[start..i].iter().collect()),
                pos: start,
            });
        } else if c == '[' && chars.get(i + 1) == Some(&'[') {
            // `[[name]]`: an identifier that may hold any character but `]]` (a
            // configuration id in `configurations.[[id]].status`).
            let close = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == ']' && chars[j + 1] == ']')
                .ok_or_else(|| QueryError::at(text, start, "'[[' without its ']]'".to_owned()))?;
            out.push(Token {
                tok: Tok::Ident(chars[i + 2..close].iter().collect()),
                pos: start,
            });
            i = close + 2;
        } else if c.is_ascii_digit() {
            i = number_end(&chars, i);
            let literal: String = chars[start..i].iter().collect();
            let number = parse_number(&literal).ok_or_else(|| {
                QueryError::at(text, start, format!("'{literal}' is not a valid number"))
            })?;
            out.push(Token {
                tok: Tok::Num(number),
                pos: start,
            });
        } else if c == '\'' || c == '"' {
            let (s, end) = string(text, &chars, i)?;
            i = end;
            out.push(Token {
                tok: Tok::Str(s),
                pos: start,
            });
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let Some(sym) = SYMBOLS.iter().find(|s| rest.starts_with(**s)) else {
                return Err(QueryError::at(
                    text,
                    start,
                    format!("Unexpected character '{c}'"),
                ));
            };
            i += sym.chars().count();
            out.push(Token {
                tok: Tok::Sym(sym),
                pos: start,
            });
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: chars.len(),
    });
    Ok(out)
}

fn number_end(chars: &[char], mut i: usize) -> usize {
    let digits = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_ascii_digit() {
            *i += 1;
        }
    };
    digits(&mut i);
    if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
        i += 1;
        digits(&mut i);
    }
    if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
        let mut j = i + 1;
        if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
            j += 1;
        }
        if j < chars.len() && chars[j].is_ascii_digit() {
            i = j;
            digits(&mut i);
        }
    }
    i
}

fn parse_number(literal: &str) -> Option<Number> {
    if let Ok(n) = literal.parse::<i64>() {
        return Some(n.into());
    }
    if let Ok(n) = literal.parse::<u64>() {
        return Some(n.into());
    }
    literal.parse::<f64>().ok().and_then(Number::from_f64)
}

/// A quoted string starting at `start` (its quote): its text and the offset after it.
/// A backslash escapes the next character (`\'`, `\\`, `\n`, `\t`, `\uXXXX`).
fn string(text: &str, chars: &[char], start: usize) -> Result<(String, usize), QueryError> {
    let quote = chars[start];
    let mut out = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            c if c == quote => return Ok((out, i + 1)),
            '\\' => {
                let Some(&next) = chars.get(i + 1) else { break };
                i += 2;
                match next {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let hex: String = chars.iter().skip(i).take(4).collect();
                        let c = (hex.len() == 4)
                            .then(|| u32::from_str_radix(&hex, 16).ok())
                            .flatten()
                            .and_then(char::from_u32)
                            .ok_or_else(|| {
                                QueryError::at(text, i - 2, "Invalid \\u escape in a string")
                            })?;
                        out.push(c);
                        i += 4;
                    }
                    other => out.push(other),
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err(QueryError::at(text, start, "Unterminated string literal"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_positions() {
        let toks = tokenize("SELECT * FROM devices WHERE x.$y >= -1.5e2 AND s = 'a\\'b'").unwrap();
        let kinds: Vec<Tok> = toks.iter().map(|t| t.tok.clone()).collect();
        assert_eq!(kinds[0], Tok::Ident("SELECT".into()));
        assert_eq!(kinds[1], Tok::Sym("*"));
        assert_eq!(kinds[7], Tok::Ident("$y".into()));
        assert_eq!(kinds[8], Tok::Sym(">="));
        assert_eq!(kinds[9], Tok::Sym("-"));
        assert_eq!(kinds[10], Tok::Num(Number::from_f64(150.0).unwrap()));
        assert_eq!(kinds[14], Tok::Str("a'b".into()));
        assert_eq!(toks[1].pos, 7);
        assert!(matches!(kinds.last(), Some(Tok::Eof)));
    }

    #[test]
    fn bad_input_is_an_error_with_a_position() {
        let e = tokenize("a = 'open").unwrap_err();
        assert_eq!((e.line, e.column), (1, 4));
        let e = tokenize("a\n = #").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
    }
}
