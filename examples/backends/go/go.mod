module linkloom.example/backend

go 1.19

require github.com/linkloom/linkloom/sdks/go v0.0.0

replace github.com/linkloom/linkloom/sdks/go => ../../../sdks/go
