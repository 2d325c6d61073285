// placeholder: being written
typedef int waggle_placeholder_t;
