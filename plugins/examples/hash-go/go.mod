module hash-go

go 1.24
