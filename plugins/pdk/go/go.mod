module prx.local/pdk

go 1.24
