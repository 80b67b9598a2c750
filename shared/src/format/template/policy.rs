//! The statements and expressions a template may use, checked on its
//! syntax tree when it is compiled (so a template is refused when it is
//! saved, not when an event comes). See the parent module's docs for
//! the bound this gives.

use minijinja::machinery::{WhitespaceConfig, ast, parse};
use minijinja::syntax::SyntaxConfig;

/// The most values from the event (or from filters) that `~`, `+` and
/// `in` may turn into text in one expression, counting the iterables of
/// the loops around it.
pub const MAX_CONCAT_WEIGHT: usize = 6;
/// The most filter calls in one expression, counting the iterables of
/// the loops around it.
pub const MAX_LIVE_FILTERS: usize = 12;

/// Checks `source` (which already compiled) against the policy.
pub(super) fn check(source: &str, name: &str) -> Result<(), String> {
    let stmt = parse(source, name, SyntaxConfig, WhitespaceConfig::default())
        .map_err(|e| e.to_string())?;
    let mut walker = Walker {
        name,
        targets: Vec::new(),
        held: Cost::default(),
    };
    walker.stmt(&stmt)
}

/// What an expression materialises: the weight of its `~`/`+`/`in`
/// groups and the number of its filter calls.
#[derive(Clone, Copy, Default)]
struct Cost {
    concat: usize,
    filters: usize,
}

impl Cost {
    fn add(self, other: Cost) -> Cost {
        Cost {
            concat: self.concat.saturating_add(other.concat),
            filters: self.filters.saturating_add(other.filters),
        }
    }
}

struct Walker<'a> {
    name: &'a str,
    /// Loop variables in scope, with the weight of one item.
    targets: Vec<(&'a str, usize)>,
    /// What the enclosing loops' iterables hold while their bodies run.
    held: Cost,
}

impl<'a> Walker<'a> {
    fn refuse(&self, span: minijinja::machinery::Span, what: &str) -> Result<(), String> {
        Err(format!("{what} (in {}:{})", self.name, span.start_line))
    }

    fn stmts(&mut self, stmts: &'a [ast::Stmt<'a>]) -> Result<(), String> {
        stmts.iter().try_for_each(|s| self.stmt(s))
    }

    fn stmt(&mut self, stmt: &'a ast::Stmt<'a>) -> Result<(), String> {
        use ast::Stmt as S;
        match stmt {
            S::Template(t) => self.stmts(&t.children),
            S::EmitExpr(e) => self.expr(&e.expr, e.span()),
            S::EmitRaw(_) => Ok(()),
            S::IfCond(c) => {
                self.expr(&c.expr, c.span())?;
                self.stmts(&c.true_body)?;
                self.stmts(&c.false_body)
            }
            S::ForLoop(f) => {
                if f.recursive {
                    return self.refuse(
                        f.span(),
                        "templates cannot use recursive loops: each level would keep \
                         its own copy of the output",
                    );
                }
                let cost = self.cost(&f.iter, false)?;
                self.within(cost, f.span())?;
                let weight = self.item_weight(&f.iter);
                let before = self.targets.len();
                let mut names = Vec::new();
                target_names(&f.target, &mut names);
                self.targets.extend(names.into_iter().map(|n| (n, weight)));
                let held = self.held;
                self.held = held.add(cost);
                if let Some(cond) = &f.filter_expr {
                    self.expr(cond, f.span())?;
                }
                self.stmts(&f.body)?;
                self.targets.truncate(before);
                self.stmts(&f.else_body)?;
                self.held = held;
                Ok(())
            }
            S::Set(s) => {
                if !matches!(s.target, ast::Expr::Var(_)) || !matches!(s.expr, ast::Expr::Const(_))
                {
                    return self.refuse(
                        s.span(),
                        "templates can set a variable only to a literal value \
                         (`{% set sep = \", \" %}`): a computed one could grow from \
                         statement to statement",
                    );
                }
                Ok(())
            }
            S::WithBlock(w) => {
                if w.assignments
                    .iter()
                    .any(|(_, v)| !matches!(v, ast::Expr::Const(_)))
                {
                    return self.refuse(
                        w.span(),
                        "templates can bind only literal values with `with`: a \
                         computed one could grow from block to block",
                    );
                }
                let before = self.targets.len();
                for (t, _) in &w.assignments {
                    let mut names = Vec::new();
                    target_names(t, &mut names);
                    self.targets.extend(names.into_iter().map(|n| (n, 0)));
                }
                self.stmts(&w.body)?;
                self.targets.truncate(before);
                Ok(())
            }
            S::SetBlock(s) => self.refuse(
                s.span(),
                "templates cannot capture output with `{% set %}...{% endset %}`",
            ),
            S::FilterBlock(f) => self.refuse(
                f.span(),
                "templates cannot use `{% filter %}` blocks: they capture output",
            ),
            S::AutoEscape(a) => {
                self.expr(&a.enabled, a.span())?;
                self.stmts(&a.body)
            }
            // Macros, `call`, blocks, `include`, `import`, `extends`,
            // `break` and `continue` are not even parsed: MiniJinja is
            // built without the `macros`, `multi_template` and
            // `loop_controls` features.
            S::Do(d) => self.refuse(d.span(), "templates cannot use `{% do %}`"),
        }
    }

    /// Checks one expression statement against the limits.
    fn expr(&self, e: &'a ast::Expr<'a>, span: minijinja::machinery::Span) -> Result<(), String> {
        let cost = self.cost(e, false)?;
        self.within(cost, span)
    }

    fn within(&self, cost: Cost, span: minijinja::machinery::Span) -> Result<(), String> {
        let total = self.held.add(cost);
        if total.concat > MAX_CONCAT_WEIGHT {
            return self.refuse(
                span,
                &format!(
                    "the expression concatenates too much: `~`, `+` and `in` may \
                     combine at most {MAX_CONCAT_WEIGHT} values from the event or from \
                     filters in one expression (counting the loops around it), so that \
                     no value grows large; join more with `[a, b, c]|join`"
                ),
            );
        }
        if total.filters > MAX_LIVE_FILTERS {
            return self.refuse(
                span,
                &format!(
                    "the expression uses too many filters: at most {MAX_LIVE_FILTERS} in \
                     one expression (counting the loops around it)"
                ),
            );
        }
        Ok(())
    }

    /// A bound on the size of `e`'s value, in units of "one value from
    /// the event or from a filter" (literals count nothing: they are
    /// bounded by the source).
    fn weight(&self, e: &ast::Expr<'a>) -> usize {
        use ast::Expr as E;
        match e {
            E::Var(v) => self
                .targets
                .iter()
                .rev()
                .find(|(n, _)| *n == v.id)
                .map_or(1, |(_, w)| *w),
            E::Const(_) | E::Compare(_) | E::Test(_) | E::UnaryOp(_) => 0,
            E::Slice(s) => self.weight(&s.expr),
            E::GetAttr(g) => self.weight(&g.expr),
            E::GetItem(g) => self.weight(&g.expr),
            E::BinOp(b) => match b.op {
                ast::BinOpKind::Concat | ast::BinOpKind::Add => {
                    self.weight(&b.left).saturating_add(self.weight(&b.right))
                }
                ast::BinOpKind::ScAnd | ast::BinOpKind::ScOr => {
                    self.weight(&b.left).max(self.weight(&b.right))
                }
                _ => 0,
            },
            E::IfExpr(i) => self
                .weight(&i.true_expr)
                .max(i.false_expr.as_ref().map_or(0, |f| self.weight(f))),
            E::Filter(_) => 1,
            E::Call(c) => c
                .args
                .iter()
                .map(|a| self.weight(arg_expr(a)))
                .fold(3usize, usize::saturating_add),
            E::List(l) => l
                .items
                .iter()
                .map(|i| self.weight(i))
                .fold(0usize, usize::saturating_add),
            E::Map(m) => m
                .keys
                .iter()
                .chain(m.values.iter())
                .map(|i| self.weight(i))
                .fold(0usize, usize::saturating_add),
        }
    }

    /// A bound on the weight of one item of the iterable `e`.
    fn item_weight(&self, e: &ast::Expr<'a>) -> usize {
        use ast::Expr as E;
        match e {
            E::List(l) => l.items.iter().map(|i| self.weight(i)).max().unwrap_or(0),
            E::Map(m) => m.keys.iter().map(|i| self.weight(i)).max().unwrap_or(0),
            E::Call(c) if matches!(&c.expr, E::Var(v) if v.id == "range") => 0,
            _ => self.weight(e),
        }
    }

    /// What evaluating `e` materialises. `in_group`: `e` is an operand
    /// of a `~`/`+` whose group is already counted.
    fn cost(&self, e: &'a ast::Expr<'a>, in_group: bool) -> Result<Cost, String> {
        use ast::Expr as E;
        let mut cost = Cost::default();
        match e {
            E::Var(_) | E::Const(_) => {}
            E::Slice(s) => {
                cost = self.cost(&s.expr, false)?;
                // A slice of a value from the event copies it (a reversed
                // string also makes a list of its characters): counted as a
                // filter's result, so an expression holds at most
                // MAX_LIVE_FILTERS of them.
                if self.weight(&s.expr) > 0 {
                    cost.filters = cost.filters.saturating_add(1);
                }
                for x in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    cost = cost.add(self.cost(x, false)?);
                }
            }
            E::UnaryOp(u) => cost = self.cost(&u.expr, false)?,
            E::BinOp(b) => match b.op {
                ast::BinOpKind::Mul => {
                    self.refuse(
                        b.span(),
                        "templates cannot use `*`: it repeats strings and lists \
                         into values of any size",
                    )?;
                }
                ast::BinOpKind::Concat | ast::BinOpKind::Add => {
                    if !in_group {
                        cost.concat = self.weight(e);
                    }
                    cost = cost
                        .add(self.cost(&b.left, is_group(&b.left))?)
                        .add(self.cost(&b.right, is_group(&b.right))?);
                }
                ast::BinOpKind::In => {
                    // `x in "text"` writes out `x` as text.
                    cost.concat = self.weight(&b.left);
                    cost = cost
                        .add(self.cost(&b.left, false)?)
                        .add(self.cost(&b.right, false)?);
                }
                _ => {
                    cost = self.cost(&b.left, false)?.add(self.cost(&b.right, false)?);
                }
            },
            E::Compare(c) => {
                cost = self.cost(&c.expr, false)?;
                let mut left = &c.expr;
                for op in &c.ops {
                    if matches!(op.op, ast::CompareOpKind::In | ast::CompareOpKind::NotIn) {
                        cost.concat = cost.concat.saturating_add(self.weight(left));
                    }
                    cost = cost.add(self.cost(&op.expr, false)?);
                    left = &op.expr;
                }
            }
            E::IfExpr(i) => {
                cost = self
                    .cost(&i.test_expr, false)?
                    .add(self.cost(&i.true_expr, false)?);
                if let Some(f) = &i.false_expr {
                    cost = cost.add(self.cost(f, false)?);
                }
            }
            E::Filter(f) => {
                cost.filters = 1;
                if let Some(x) = &f.expr {
                    cost = cost.add(self.cost(x, false)?);
                }
                for a in &f.args {
                    cost = cost.add(self.cost(arg_expr(a), false)?);
                }
            }
            E::Test(t) => {
                cost = self.cost(&t.expr, false)?;
                for a in &t.args {
                    cost = cost.add(self.cost(arg_expr(a), false)?);
                }
            }
            E::GetAttr(g) => cost = self.cost(&g.expr, false)?,
            E::GetItem(g) => {
                cost = self
                    .cost(&g.expr, false)?
                    .add(self.cost(&g.subscript_expr, false)?);
            }
            E::Call(c) => {
                if let E::Var(v) = &c.expr
                    && v.id == "namespace"
                {
                    self.refuse(
                        c.span(),
                        "templates cannot use `namespace()`: its values could grow \
                         from loop to loop",
                    )?;
                }
                cost = self.cost(&c.expr, false)?;
                for a in &c.args {
                    cost = cost.add(self.cost(arg_expr(a), false)?);
                }
            }
            E::List(l) => {
                for i in &l.items {
                    cost = cost.add(self.cost(i, false)?);
                }
            }
            E::Map(m) => {
                for i in m.keys.iter().chain(m.values.iter()) {
                    cost = cost.add(self.cost(i, false)?);
                }
            }
        }
        Ok(cost)
    }
}

fn is_group(e: &ast::Expr<'_>) -> bool {
    matches!(e, ast::Expr::BinOp(b) if matches!(b.op, ast::BinOpKind::Concat | ast::BinOpKind::Add))
}

fn arg_expr<'x, 'a>(a: &'x ast::CallArg<'a>) -> &'x ast::Expr<'a> {
    match a {
        ast::CallArg::Pos(e)
        | ast::CallArg::Kwarg(_, e)
        | ast::CallArg::PosSplat(e)
        | ast::CallArg::KwargSplat(e) => e,
    }
}

fn target_names<'a>(e: &ast::Expr<'a>, out: &mut Vec<&'a str>) {
    match e {
        ast::Expr::Var(v) => out.push(v.id),
        ast::Expr::List(l) => l.items.iter().for_each(|i| target_names(i, out)),
        _ => {}
    }
}
