"""What every command and file of the package stands on, none of it the paper's: errors that are
one line (`errors`), commands and their flags (`cli`, `common_flags`, `input_flags`,
`runtime_flags`), files written whole (`atomic`) and checked when read (`safefile`), result
files a run may write (`outputs`), the user's folders (`home`), memory (`memory`) and the
runtime's set-up (`runtime`)."""
