package writ.snp
allow if {
    input.snp.measurement in {"ab", "cd"}
    input.snp.reported_tcb_snp >= 22
    input.snp.vmpl <= 0
}
deny contains msg if {
    some e in input.ima.entries
    not e.violation
    startswith(e.path, "/tmp/")
    msg := sprintf("%s runs from /tmp", [e.path])
}
