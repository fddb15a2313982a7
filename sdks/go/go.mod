module github.com/linkloom/linkloom/sdks/go

go 1.19
