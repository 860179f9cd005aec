package w
denyw if {
    input.boot.crs.sha256["0"] in {"00", "11"}
}

deny contains sprintf("kernel %s", [k.name]) if {
    some k in input.boot.kernels
    not k in {"00", "11"}
}

deny contains sprintf("kernel %8888888888888s", [k.name]) if {
    some k in input.boot.kernels
    not k.digest in {"9f80"}
}
