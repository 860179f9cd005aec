package writ.fleet

default allow := false

allow if {
    input.boot.secure_boot == true
    input.tpm.pcrs.sha256["0"] in {"00", "11"}
}

deny contains sprintf("kernel %s", [k.name]) if {
    some k in input.boot.kernels
    not k.digest in {"9f86"}
}
