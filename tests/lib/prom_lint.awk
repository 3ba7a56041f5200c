# prom_lint.awk - a strict check of a Prometheus text exposition (format 0.0.4) on stdin, for
# the tests: every sample belongs to a family announced before it by one "# HELP" and one
# "# TYPE"; names, labels and values are well formed; no label value is empty; no sample is
# given twice; counters end in _total; a histogram's buckets rise to its +Inf bucket, which
# equals its _count. Prints one line per problem; exits 1 if there is any.

function problem(msg) {
    printf "line %d: %s: %s\n", NR, msg, $0
    bad = 1
}

# The family a sample name belongs to: a histogram's _bucket, _sum and _count are its own.
function family_of(name,    base) {
    if (match(name, /_(bucket|sum|count)$/)) {
        base = substr(name, 1, RSTART - 1)
        if (type[base] == "histogram" || type[base] == "summary") {
            return base
        }
    }
    return name
}

BEGIN {
    name_re = "^[a-zA-Z_:][a-zA-Z0-9_:]*$"
    value_re = "^([-+]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][-+]?[0-9]+)?|[-+]?Inf|NaN)$"
}

/^# HELP / {
    if ($3 !~ name_re) problem("bad metric name in HELP")
    if ($3 in help) problem("second HELP for " $3)
    if (NF < 4) problem("empty HELP text")
    help[$3] = 1
    next
}

/^# TYPE / {
    if ($3 in type) problem("second TYPE for " $3)
    if ($4 !~ /^(counter|gauge|histogram|summary|untyped)$/ || NF != 4) problem("bad TYPE")
    if (!($3 in help)) problem("TYPE before HELP for " $3)
    if ($4 == "counter" && $3 !~ /_total$/) problem("counter not named _total")
    type[$3] = $4
    next
}

/^#/ { next }

/^$/ { problem("empty line"); next }

{
    line = $0
    if (!match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*/)) { problem("no metric name"); next }
    name = substr(line, 1, RLENGTH)
    rest = substr(line, RLENGTH + 1)
    labels = ""
    if (substr(rest, 1, 1) == "{") {
        end = index(rest, "}")
        if (end == 0) { problem("unclosed labels"); next }
        labels = substr(rest, 2, end - 2)
        rest = substr(rest, end + 1)
        n = labels
        while (n != "") {
            if (!match(n, /^[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"/)) { problem("bad label"); break }
            pair = substr(n, 1, RLENGTH)
            n = substr(n, RLENGTH + 1)
            if (pair ~ /=""$/) problem("empty label value")
            if (substr(n, 1, 1) == ",") n = substr(n, 2)
            else if (n != "") { problem("bad label separator"); break }
        }
    }
    if (substr(rest, 1, 1) != " ") { problem("no space before the value"); next }
    split(substr(rest, 2), parts, " ")
    if (parts[1] !~ value_re) problem("bad value")
    fam = family_of(name)
    if (!(fam in help) || !(fam in type)) problem("sample of " fam " without HELP and TYPE")
    if (type[fam] == "counter" && parts[1] + 0 < 0) problem("negative counter")
    key = name "{" labels "}"
    if (key in seen) problem("sample given twice")
    seen[key] = 1
    if (type[fam] == "histogram" && name == fam "_bucket") {
        if (fam in last_bucket && parts[1] + 0 < last_bucket[fam]) problem("bucket below the one before")
        last_bucket[fam] = parts[1] + 0
        if (labels ~ /le="\+Inf"/) inf[fam] = parts[1] + 0
    }
    if (type[fam] == "histogram" && name == fam "_count") count[fam] = parts[1] + 0
}

END {
    for (f in type) {
        if (type[f] == "histogram" && (!(f in inf) || inf[f] != count[f])) {
            printf "histogram %s: +Inf bucket %s, _count %s\n", f, inf[f], count[f]
            bad = 1
        }
    }
    exit bad
}
