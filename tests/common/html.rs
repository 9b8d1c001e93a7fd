//! Reading a report page the way its tools would: charts by `data-chart`, layers by class, and
//! the data attributes on them (see docs/report.md, "For tests and tools").

/// The layers of class `class` inside the chart `chart`, each as its text.
pub fn layers<'a>(html: &'a str, chart: &str, class: &str) -> Vec<&'a str> {
    let open = format!("<svg class=\"chart\" data-chart=\"{chart}\"");
    let Some(start) = html.find(&open) else {
        return Vec::new();
    };
    // The chart ends where the next chart or the section does.
    let rest = &html[start + open.len()..];
    let end = [rest.find("<svg class=\"chart\""), rest.find("</section>")]
        .into_iter()
        .flatten()
        .min()
        .expect("the chart ends");
    let body = &rest[..end];
    let marker = format!("<g class=\"layer {class}\"");
    body.match_indices(&marker)
        .map(|(at, _)| {
            let len = body[at..].find("</g>").expect("the layer ends");
            &body[at..at + len]
        })
        .collect()
}

/// Elements `<tag` in `text`.
pub fn count(text: &str, tag: &str) -> usize {
    text.matches(&format!("<{tag} ")).count() + text.matches(&format!("<{tag}/")).count()
}

/// A data attribute of a layer.
pub fn data<'a>(layer: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("data-{name}=\"");
    let at = layer.find(&key)? + key.len();
    Some(&layer[at..at + layer[at..].find('"')?])
}
